//! The `eventflow` binary, run for real on fixture files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
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

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn a_good_file_is_ok_and_exits_0() {
    for name in ["good.json", "good.yaml"] {
        let file = path_arg(&fixture(name));
        let out = eventflow(&["validate", &file]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{file}: ok (2 steps)\n"));
        assert_eq!(text(&out.stderr), "");
    }
}

#[test]
fn every_problem_is_printed_with_its_path_and_the_run_exits_1() {
    let file = path_arg(&fixture("several-problems.json"));
    let out = eventflow(&["validate", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    let expected = [
        // the unknown dependency, with the near miss suggested
        (
            "$.steps[4].depends_on[0]",
            "`publsh_page` is neither a step nor a parallel group of this workflow; did you mean `publish_page`?",
        ),
        // the cycle, named step by step
        (
            "$.steps[0].depends_on",
            "steps `sign_contract` -> `pay_deposit` -> `book_venue` -> `sign_contract` form a cycle",
        ),
        // the unknown action
        (
            "$.steps[3].action",
            "`page.publish` is not an action this host offers",
        ),
        // the expression that does not parse
        (
            "$.steps[5].when",
            "`input.event.public &&` does not parse as CEL",
        ),
    ];
    for (path, sentence) in expected {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("{file}: {path}: ")))
            .unwrap_or_else(|| panic!("no line for {path} in:\n{err}"));
        assert!(line.contains(sentence), "{path}: {line}");
    }
    assert_eq!(err.lines().count(), expected.len(), "{err}");
}

#[test]
fn a_missing_file_exits_2_and_says_which_file_and_what_to_do() {
    let file = path_arg(&fixture("no-such-workflow.json"));
    let out = eventflow(&["validate", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("{file}: cannot read the file: ")),
        "{err}"
    );
    assert!(err.contains("os error"), "the OS error is shown: {err}");
    assert!(
        err.contains("check the file name"),
        "advice is given: {err}"
    );
}

#[test]
fn several_files_are_all_checked_and_the_worst_status_wins() {
    let good = path_arg(&fixture("good.json"));
    let bad = path_arg(&fixture("several-problems.json"));
    let missing = path_arg(&fixture("no-such-workflow.json"));

    let out = eventflow(&["validate", &good, &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("{good}: ok (2 steps)\n"));

    let out = eventflow(&["validate", &bad, &missing, &good]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains(&format!("{good}: ok")));
    assert!(text(&out.stderr).contains(&format!("{bad}: $.steps[3].action")));
}

#[test]
fn graph_prints_a_flowchart() {
    let out = eventflow(&["graph", &path_arg(&fixture("good.json"))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let chart = text(&out.stdout);
    assert!(chart.starts_with("flowchart TD\n"), "{chart}");
    assert!(chart.contains("s_save_event --> s_remind"), "{chart}");
    assert!(
        chart.contains("s_save_event -.->|compensate| s_save_event__undo"),
        "{chart}"
    );
}

#[test]
fn graph_refuses_an_invalid_definition_with_the_same_messages() {
    let file = path_arg(&fixture("several-problems.json"));
    let validated = eventflow(&["validate", &file]);
    let drawn = eventflow(&["graph", &file]);
    assert_eq!(drawn.status.code(), Some(1));
    assert_eq!(text(&drawn.stdout), "");
    assert_eq!(text(&drawn.stderr), text(&validated.stderr));

    let missing = eventflow(&["graph", &path_arg(&fixture("no-such-workflow.json"))]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn schema_prints_the_definition_schema() {
    let out = eventflow(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    assert_eq!(schema, eventflow_engine::definition_schema());
}
