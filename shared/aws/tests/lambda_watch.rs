//! The coordinator's `main.rs` wiring, proved on the real binary: `cargo lambda watch` builds
//! and runs `coordinator` (debug) behind its Lambda Runtime API emulator, with the environment
//! the template sets pointing at this test's table (moto) and queues (LocalStack), and
//! `cargo lambda invoke` sends it one SQS batch, `fixtures/coordinator-sqs-event.json` (the
//! aws_lambda_events crate's `example-sqs-event.json`, made a FIFO batch of two records):
//!
//! - `MessageID_1`, a valid `EventMessage` for an execution that does not exist: the
//!   coordinator reads the table, finds no checkpoint, logs and drops it (not a failure);
//! - `MessageID_2`, a malformed body: answered as a batch item failure.
//!
//! So the answer is exactly `{"batchItemFailures": [{"itemIdentifier": "MessageID_2"}]}`; a
//! missing or wrong variable would fail init, and a wrong table would fail `MessageID_1` too.
//!
//! Needs `cargo lambda` on PATH (scripts/test.sh installs cargo-lambda from PyPI and puts it
//! there) and the emulators (`eval "$(bash localstack/start.sh)"`).

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

// Only the resources of `support` are used here, not its event-source emulator.
#[allow(dead_code)]
mod support;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventflow_aws::messages::{EventMessage, Family};
use serde_json::{Value, json};

/// How long the whole exchange may take: building the coordinator in debug when the shared
/// target directory is cold for it, starting it, one invocation.
const DEADLINE: Duration = Duration::from_secs(240);

const FIXTURE: &str = "tests/fixtures/coordinator-sqs-event.json";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `cargo`, without the variables `cargo test` set for this test crate: build scripts that
/// watch them (ring's watches `CARGO_MANIFEST_DIR`) would otherwise see them change and
/// rebuild, for the function, what a plain `cargo build` in the workspace has built.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let per_crate = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ];
        if per_crate.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// Fails, with what to do, when `cargo lambda` cannot run.
fn require_cargo_lambda() {
    let out = cargo().args(["lambda", "--version"]).output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    assert!(
        ok,
        "`cargo lambda` is not on PATH ({}): run scripts/test.sh, which installs cargo-lambda \
         from PyPI into ~/.cache/eventflow/venv and puts its bin/ on PATH for the tests",
        match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        }
    );
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `cargo lambda watch` in its own process group, ended (the group: cargo, the watcher, the
/// function) when dropped, whether the test passed or not.
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left of the group (the function, a cargo run) is killed.
        kill("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_binary_answers_an_sqs_batch_under_cargo_lambda_watch() {
    require_cargo_lambda();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).expect("json");
    // The fixture says what the test claims: the first body is an event message, the second is
    // not.
    let bodies: Vec<&str> = event["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies.len(), 2);
    let valid: EventMessage = serde_json::from_str(bodies[0]).expect("an event message");
    assert!(serde_json::from_str::<EventMessage>(bodies[1]).is_err());

    let env = support::env::test_env(5).await;
    let port = free_port();
    let log = std::env::temp_dir().join(format!(
        "eventflow-lambda-watch-{}-{port}.log",
        std::process::id()
    ));
    let out = File::create(&log).expect("log file");
    let mut cmd = cargo();
    cmd.args(["lambda", "watch", "--ignore-changes"])
        .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        .args(["--package", "eventflow-function-coordinator"])
        .args(["--bin", "coordinator"])
        .current_dir(workspace())
        // What template.yaml sets; AWS_* (region, keys, the emulators' endpoints) are inherited.
        .env("EVENTFLOW_TABLE", &env.table)
        .env("EVENTFLOW_COORDINATOR_QUEUE_URL", &env.urls.coordinator)
        .env("EVENTFLOW_SENDER", support::env::SENDER)
        .env("EVENTFLOW_NOTIFY_DOMAIN", "notify.eventflow.example")
        .env("EVENTFLOW_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .process_group(0);
    for f in Family::ALL {
        cmd.env(
            format!("EVENTFLOW_TASKS_{}_QUEUE_URL", f.name().to_uppercase()),
            &env.urls.tasks[f.name()],
        );
    }
    let started = Instant::now();
    let watch = Watch {
        child: cmd.spawn().expect("cargo lambda watch"),
        log,
    };

    // The emulator listens first; the invocation then waits for the function's first
    // `GET .../invocation/next` (after its build and init).
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cargo lambda watch did not listen on {port} within 60 s:\n{}",
            watch.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let invoke_out = std::env::temp_dir().join(format!(
        "eventflow-lambda-invoke-{}-{port}.json",
        std::process::id()
    ));
    let mut invoke = cargo()
        .args(["lambda", "invoke", "coordinator", "--data-file"])
        .arg(&fixture)
        .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        .args(["--output-format", "json", "--color", "never"])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(File::create(&invoke_out).expect("invoke output"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo lambda invoke");
    let status = loop {
        if let Some(status) = invoke.try_wait().expect("invoke status") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = invoke.kill();
            let _ = invoke.wait();
            panic!(
                "no answer within {DEADLINE:?}; cargo lambda watch said:\n{}",
                watch.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stdout = std::fs::read_to_string(&invoke_out).unwrap_or_default();
    let _ = std::fs::remove_file(&invoke_out);
    let mut stderr = String::new();
    if let Some(mut e) = invoke.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "cargo lambda invoke failed ({status}): {stdout}{stderr}\ncargo lambda watch said:\n{}",
        watch.log_tail()
    );
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the answer is not JSON ({e}): {stdout}\ncargo lambda watch said:\n{}",
            watch.log_tail()
        )
    });
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "MessageID_2"}]}),
        "cargo lambda watch said:\n{}",
        watch.log_tail()
    );

    // The function's own log lines (JSON, on the watch's output): the valid event reached the
    // table and was dropped for its unknown execution; the malformed one was named.
    let logs = std::fs::read_to_string(&watch.log).unwrap_or_default();
    assert!(
        logs.contains("events for an unknown execution were dropped")
            && logs.contains(&valid.execution_id),
        "no drop of {} logged:\n{}",
        valid.execution_id,
        watch.log_tail()
    );
    assert!(
        logs.contains("a malformed event message") && logs.contains("MessageID_2"),
        "the malformed message was not logged:\n{}",
        watch.log_tail()
    );
    eprintln!(
        "cargo lambda watch + invoke answered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(watch);
}
