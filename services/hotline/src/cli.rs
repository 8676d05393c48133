//! The command line: services and operator tools.

use crate::app::{self, Component};
use crate::commands;
use crate::config::Config;
use clap::{Parser, Subcommand};
use hotline_workers::SystemClock;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "hotline",
    version,
    about = "Citizens' appeals to the education bureau's 12345 hotline"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every component in one process (a small site, or local development).
    Serve,
    /// Run some components: `hotline run api`, `hotline run classifier router`, …
    Run {
        #[arg(required = true, value_enum)]
        components: Vec<Component>,
    },
    /// Create the database and topics and apply migrations, then exit.
    Migrate,
    /// Issue or revoke bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Bulk-load a 12345 platform export (CSV or JSONL) through the intake path.
    Import {
        file: PathBuf,
        /// `csv` or `jsonl`; by default from the file's extension.
        #[arg(long)]
        format: Option<String>,
        /// Old appeals: deadlines are computed but raise no alerts.
        #[arg(long)]
        historical: bool,
    },
    /// The working-day calendar: load next year's official schedule without a redeploy.
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// Deadline clocks.
    Deadlines {
        #[command(subcommand)]
        command: DeadlinesCommand,
    },
    /// Inspect and re-send dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Classify JSONL `{"id","text"}` lines (stdin by default), one JSONL result per line.
    Classify {
        /// A model directory from `hotline train`; the built-in topic model by default.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Train a model: from JSONL `{"text","label"}` (any labels), or the topic model from seeds/.
    Train {
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where to write `model.bin`; point HOTLINE_MODEL_DIR here and the classifier picks it up.
        #[arg(long)]
        out: PathBuf,
        /// Add the operators' and managers' topic corrections from the database.
        #[arg(long)]
        with_corrections: bool,
    },
    /// Benchmarks (accuracy, speed, load time, memory).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Prints only the token on stdout.
    Issue {
        #[arg(long)]
        role: String,
        /// Required for `--role unit`.
        #[arg(long)]
        unit: Option<String>,
        /// Required for `--role school`: the school's name in seeds/schools.tsv.
        #[arg(long)]
        school: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// Days until the token expires; never by default.
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// One JSON line per token (never the token itself).
    List,
    /// Revoke a token by its id (from `hotline token list`).
    Revoke { id: uuid::Uuid },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Train on one labelled JSONL file and score another once; or cross-validate on the
    /// training file only (`--cv K`, with `--grid` to compare feature settings).
    Classifier {
        #[arg(long)]
        train: PathBuf,
        #[arg(long)]
        test: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        cv: usize,
        /// With --cv: repeat the cross-validation over this many splits (the first in file
        /// order, the others shuffled) and report each and their mean.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        repeats: u16,
        #[arg(long)]
        grid: bool,
        /// With --cv: compare stacking on and off for the chosen features, at C = 1, 4, 16.
        #[arg(long)]
        stacking_grid: bool,
    },
    /// The topic classifier on a held-out fifth of the seed examples, and its speed.
    Seeds,
    /// Classifier and dispatch catalogue together on the labelled routing set.
    Routing,
    /// The topic classifier on real appeals labelled in seeds/real-check/ (the texts are read
    /// from the public data files given, by id).
    Real {
        /// JSONL files holding the texts (`{"id","text",...}`), e.g. the Teddy-Cup train and
        /// test files.
        #[arg(long = "texts", required = true)]
        texts: Vec<PathBuf>,
        /// Also print the dev set's misclassified ids, for study (never the holdout's).
        #[arg(long)]
        dev_errors: bool,
        /// Classify with this confidence temperature (at 100 characters) instead of the
        /// built-in one; the dev report gives the one that fits dev best. Temperatures never
        /// go below 1.
        #[arg(long)]
        temperature: Option<f32>,
        /// With --temperature: how the temperature grows with length, (chars / 100)^this.
        #[arg(long, default_value_t = 0.0, requires = "temperature")]
        temperature_length_exponent: f32,
    },
    /// Repeat linking: precision and recall on the labelled pairs in seeds/repeats/.
    Repeats,
    /// Hotspot rules replayed in event time over generated streams: false alarms in a normal
    /// week, detection delay of a surge at one school, alarms from the same volume spread out.
    Hotspots {
        #[arg(long, default_value_t = 50)]
        runs: u64,
        /// Mean appeals per day city-wide.
        #[arg(long, default_value_t = 200.0)]
        per_day: f64,
        /// Appeals in the injected surge.
        #[arg(long, default_value_t = 8)]
        surge: usize,
        #[arg(long, default_value_t = 3.0)]
        surge_hours: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadlinesCommand {
    /// Recompute every running clock from its start with the current policy
    /// (HOTLINE_DEADLINE_POLICY_FILE or the built-in one) and calendar.
    Recompute,
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Load days from a TSV file in the format of seeds/calendar/holidays.tsv
    /// (`date<TAB>off|work<TAB>name`, `#` comments, optional header).
    Load { file: PathBuf },
    /// Print the loaded years and whether next year is missing.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One JSON line per dead letter, with its error and whether it was re-driven.
    List,
    /// Re-send dead letters to their original topics, each at most once.
    Redrive {
        /// Only this dead letter (`PARTITION:OFFSET`); all not yet re-driven by default.
        #[arg(long)]
        only: Option<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Serve => serve(&config, &Component::ALL).await,
        Command::Run { components } => serve(&config, &components).await,
        Command::Migrate => {
            let _telemetry = crate::telemetry::init("hotline-migrate", &config.log_format);
            app::prepare(&config).await?;
            Ok(())
        }
        Command::Token { command } => commands::token(&config, command).await,
        Command::Import {
            file,
            format,
            historical,
        } => {
            let _telemetry = crate::telemetry::init("hotline-import", &config.log_format);
            commands::import(&config, &file, format.as_deref(), historical).await
        }
        Command::Deadlines {
            command: DeadlinesCommand::Recompute,
        } => {
            let _telemetry = crate::telemetry::init("hotline-deadlines", &config.log_format);
            commands::recompute_deadlines(&config).await
        }
        Command::Calendar { command } => {
            let _telemetry = crate::telemetry::init("hotline-calendar", &config.log_format);
            commands::calendar(&config, command).await
        }
        Command::Dlq { command } => {
            let _telemetry = crate::telemetry::init("hotline-dlq", &config.log_format);
            commands::dlq(&config, command).await
        }
        Command::Classify { model, input } => {
            commands::classify(model.as_deref(), input.as_deref())
        }
        Command::Train {
            input,
            out,
            with_corrections,
        } => {
            crate::classifier::train_command(&config, input.as_deref(), &out, with_corrections)
                .await
        }
        Command::Bench { command } => match command {
            BenchCommand::Classifier {
                train,
                test,
                cv,
                repeats,
                grid,
                stacking_grid,
            } => crate::classifier::bench_command(
                &train,
                test.as_deref(),
                cv,
                usize::from(repeats),
                grid,
                stacking_grid,
            ),
            BenchCommand::Seeds => crate::classifier::bench_seeds_command(),
            BenchCommand::Routing => crate::classifier::bench_routing_command(),
            BenchCommand::Real {
                texts,
                dev_errors,
                temperature,
                temperature_length_exponent,
            } => crate::classifier::bench_real_command(
                &texts,
                if dev_errors {
                    crate::classifier::DevErrors::Print
                } else {
                    crate::classifier::DevErrors::Hide
                },
                temperature.map(
                    |at_100_chars| hotline_classifier::hybrid::ConfidenceTemperature {
                        at_100_chars,
                        length_exponent: temperature_length_exponent,
                    },
                ),
            ),
            BenchCommand::Repeats => crate::proactive_bench::bench_repeats_command(),
            BenchCommand::Hotspots {
                runs,
                per_day,
                surge,
                surge_hours,
            } => crate::proactive_bench::bench_hotspots_command(runs, per_day, surge, surge_hours),
        },
    }
}

async fn serve(config: &Config, components: &[Component]) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init("hotline", &config.log_format);
    let stack = app::start(config, components, SystemClock).await?;
    stack.run_until_stopped().await;
    Ok(())
}
