//! `hotline`: thin entry point. Telemetry, config, then the chosen command.

fn main() -> anyhow::Result<()> {
    hotline::config::load_local_stack_defaults();
    let cli = <hotline::cli::Cli as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(hotline::cli::run(cli))
}
