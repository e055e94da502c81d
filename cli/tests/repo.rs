//! The files the repository publishes: the JSON Schema, the built-in workflow templates and
//! the example inputs. Each must agree with what the engine and the binary say today.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

fn eventflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args(args)
        .output()
        .expect("the eventflow binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_published_schema_is_what_eventflow_schema_prints() {
    let path = repo().join("schema/workflow.schema.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let out = eventflow(&["schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let generated = text(&out.stdout);
    assert!(
        committed.replace("\r\n", "\n") == generated,
        "schema/workflow.schema.json differs from the schema the engine generates; \
         regenerate it from the workspace root with\n\n    \
         cargo run -q -p eventflow-cli -- schema > schema/workflow.schema.json\n\n\
         and commit the result"
    );
}
