//! `deploy/local/up` on a machine where neither PostgreSQL nor the broker runs on its ports: it
//! creates a cluster and starts tansu in a fresh data directory, starts Hotline, and prints working
//! tokens; `deploy/local/down` stops all of it.

use std::path::PathBuf;
use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn up_brings_a_stack_up_from_nothing_and_down_stops_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = PathBuf::from(format!("/tmp/hotline-up-{}", uuid::Uuid::new_v4().simple()));
    let (pg, kafka, http) = (free_port(), free_port(), free_port());
    let envs = [
        ("HOTLINE_PG_PORT", pg.to_string()),
        ("HOTLINE_KAFKA_PORT", kafka.to_string()),
        ("HOTLINE_HTTP_PORT", http.to_string()),
        ("HOTLINE_DATA_DIR", data.display().to_string()),
        ("HOTLINE_BIN", env!("CARGO_BIN_EXE_hotline").to_owned()),
        ("HOTLINE_SKIP_BUILD", "1".to_owned()),
        ("XDG_STATE_HOME", data.join("xdg").display().to_string()),
    ];
    let run = |script: &str| {
        Command::new(root.join("deploy/local").join(script))
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("HOTLINE_DATABASE_URL")
            .env_remove("HOTLINE_KAFKA_BROKERS")
            .output()
            .unwrap()
    };
    let up = run("up");
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&up.stderr).into_owned();
    let result = std::panic::catch_unwind(|| {
        assert!(up.status.success(), "up failed:\n{stdout}\n{stderr}");
        assert!(stderr.contains("creating a PostgreSQL cluster"), "{stderr}");
        assert!(stderr.contains("starting tansu"), "{stderr}");
        stdout.clone()
    });
    let check = match result {
        Ok(stdout) => {
            let token = stdout
                .lines()
                .find_map(|l| l.strip_prefix("OPERATOR_TOKEN="))
                .expect("an operator token")
                .to_owned();
            let url = format!("http://127.0.0.1:{http}");
            let client = reqwest::Client::new();
            let filed = client
                .post(format!("{url}/api/v1/appeals"))
                .bearer_auth(&token)
                .json(
                    &serde_json::json!({"content": "平度市某小学食堂饭菜太差", "channel": "phone"}),
                )
                .send()
                .await
                .unwrap();
            Some(filed.status().as_u16())
        }
        Err(_) => None,
    };
    let down = run("down");
    let port_closed = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    let all_stopped = port_closed(pg) && port_closed(kafka) && port_closed(http);
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(
        check,
        Some(201),
        "up did not bring a working stack:\n{stdout}\n{stderr}"
    );
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(all_stopped, "down left something running");
}
