//! The subcommands, each turning its arguments into a [`Report`].

use std::path::{Path, PathBuf};

use eventflow_engine::{ActionRegistry, definition_schema, graph};

use crate::args::Command;
use crate::load::{Loaded, ReadFile, load, unreadable_message};
use crate::report::{Report, Status};

/// Runs a command that needs no runtime; `None` for the verbs that run workflows.
pub(crate) fn run(command: &Command, read: &ReadFile) -> Option<Report> {
    let actions = eventflow_actions::registry();
    Some(match command {
        Command::Validate { files } => validate(files, read, &actions),
        Command::Graph { file } => draw(file, read, &actions),
        Command::Schema => schema(),
        _ => return None,
    })
}

/// Checks every file, reporting each one, so one bad file does not hide the others.
fn validate(files: &[PathBuf], read: &ReadFile, actions: &ActionRegistry) -> Report {
    let mut report = Report::default();
    for file in files {
        if let Loaded::Valid(def) = checked(file, read, actions, &mut report) {
            let n = def.steps.len();
            let steps = if n == 1 { "step" } else { "steps" };
            report.out(format!("{}: ok ({n} {steps})", file.display()));
        }
    }
    report
}

/// Draws a definition, but only a valid one: a picture of a broken graph would mislead.
fn draw(file: &Path, read: &ReadFile, actions: &ActionRegistry) -> Report {
    let mut report = Report::default();
    if let Loaded::Valid(def) = checked(file, read, actions, &mut report) {
        report.out(graph::mermaid(&def).trim_end());
    }
    report
}

fn schema() -> Report {
    let mut report = Report::default();
    match serde_json::to_string_pretty(&definition_schema()) {
        Ok(text) => report.out(text),
        Err(e) => {
            report.err(format!("eventflow: cannot write the schema as JSON: {e}"));
            report.fail(Status::Io);
        }
    }
    report
}

/// Loads `file` and reports what is wrong with it, if anything.
fn checked(file: &Path, read: &ReadFile, actions: &ActionRegistry, report: &mut Report) -> Loaded {
    let loaded = load(file, read, actions);
    match &loaded {
        Loaded::Valid(_) => {}
        Loaded::Invalid(problems) => {
            for p in problems {
                report.err(one_line(&format!("{}: {p}", file.display())));
            }
            report.fail(Status::Invalid);
        }
        Loaded::Unreadable(e) => {
            report.err(unreadable_message(file, e));
            report.fail(Status::Io);
        }
    }
    loaded
}

/// Keeps one problem per line (for grep and editors' problem matchers): an expression quoted
/// in a message may hold a line break, shown escaped as it is written in JSON.
fn one_line(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

#[cfg(test)]
fn run_offline(command: &Command, read: &ReadFile) -> Report {
    run(command, read).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;

    use super::*;
    use crate::report::Stream;

    const GOOD: &str = r#"{"id":"w","name":"W","kind":"custom","steps":[
        {"id":"a","action":"records.put","compensate":true},
        {"id":"b","action":"notify","depends_on":["a"]}]}"#;
    const BAD: &str = r#"{"id":"w","name":"W","kind":"custom","steps":[
        {"id":"a","action":"notify","depends_on":["ghost"]}]}"#;

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> io::Result<Vec<u8>> + use<> {
        let map: HashMap<PathBuf, Vec<u8>> = entries
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec()))
            .collect();
        move |p: &Path| {
            map.get(p)
                .cloned()
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
    }

    fn validate_paths(paths: &[&str], read: &ReadFile) -> Report {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        run_offline(&Command::Validate { files: paths }, read)
    }

    #[test]
    fn a_good_file_is_ok_with_its_step_count() {
        let report = validate_paths(&["good.json"], &files(&[("good.json", GOOD)]));
        assert_eq!(report.status(), Status::Ok);
        assert_eq!(report.text(Stream::Out), "good.json: ok (2 steps)\n");
        assert_eq!(report.text(Stream::Err), "");
    }

    #[test]
    fn problems_name_the_file_and_the_path() {
        let report = validate_paths(&["bad.json"], &files(&[("bad.json", BAD)]));
        assert_eq!(report.status(), Status::Invalid);
        let err = report.text(Stream::Err);
        assert!(
            err.starts_with("bad.json: $.steps[0].depends_on[0]: `ghost` is neither"),
            "{err}"
        );
    }

    #[test]
    fn every_file_is_checked_and_an_unreadable_one_wins_the_status() {
        let read = files(&[("good.json", GOOD), ("bad.json", BAD)]);
        let report = validate_paths(&["bad.json", "missing.json", "good.json"], &read);
        assert_eq!(report.status(), Status::Io);
        assert!(report.text(Stream::Out).contains("good.json: ok"));
        let err = report.text(Stream::Err);
        assert!(err.contains("bad.json: $.steps[0]"), "{err}");
        assert!(err.contains("missing.json: cannot read the file"), "{err}");
    }

    #[test]
    fn a_problem_stays_on_one_line_even_when_it_quotes_a_line_break() {
        let def = r#"{"id":"w","name":"W","kind":"custom","steps":[
            {"id":"a","action":"notify","input":{"text":"${'a\nb'}"}}]}"#;
        let report = validate_paths(&["w.json"], &files(&[("w.json", def)]));
        assert_eq!(report.status(), Status::Invalid);
        let err = report.text(Stream::Err);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("'a\\nb'"), "{err}");
    }

    #[test]
    fn graph_draws_a_valid_definition() {
        let read = files(&[("good.json", GOOD)]);
        let report = run_offline(
            &Command::Graph {
                file: "good.json".into(),
            },
            &read,
        );
        assert_eq!(report.status(), Status::Ok);
        let out = report.text(Stream::Out);
        assert!(out.starts_with("flowchart TD\n"), "{out}");
        assert!(out.contains("s_a --> s_b"), "{out}");
    }

    #[test]
    fn graph_refuses_an_invalid_definition() {
        let read = files(&[("bad.json", BAD)]);
        let report = run_offline(
            &Command::Graph {
                file: "bad.json".into(),
            },
            &read,
        );
        assert_eq!(report.status(), Status::Invalid);
        assert_eq!(report.text(Stream::Out), "");
        assert!(
            report
                .text(Stream::Err)
                .contains("bad.json: $.steps[0].depends_on[0]")
        );
    }

    #[test]
    fn schema_is_pretty_json() {
        let report = run_offline(&Command::Schema, &files(&[]));
        let out = report.text(Stream::Out);
        let value: serde_json::Value = serde_json::from_str(&out).expect("the schema is JSON");
        assert_eq!(value, definition_schema());
        assert!(out.contains("\n  \""), "pretty-printed");
    }
}
