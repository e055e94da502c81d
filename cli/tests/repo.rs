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

// ---- the built-in templates ------------------------------------------------------------------

/// The six templates, by file, with the kind each must declare.
const TEMPLATES: [(&str, &str); 6] = [
    ("event-launch.json", "event_launch"),
    ("sponsor-outreach.json", "sponsor_outreach"),
    ("attendee-nurture.json", "attendee_nurture"),
    ("post-event-followup.json", "post_event_followup"),
    ("deliverable-tracking.json", "deliverable_tracking"),
    ("custom-example.json", "custom"),
];

fn workflow_files() -> Vec<PathBuf> {
    let dir = repo().join("workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn compile(name: &str) -> eventflow_engine::Version {
    let path = repo().join("workflows").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let def = eventflow_engine::parse_definition(&text, eventflow_engine::Format::Json)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eventflow_engine::Version::compile(def, 1, &eventflow_actions::registry())
        .unwrap_or_else(|p| panic!("{name} does not validate: {p:#?}"))
}

#[test]
fn the_six_templates_are_there_with_their_kinds() {
    let names: Vec<String> = workflow_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for (file, kind) in TEMPLATES {
        assert!(
            names.iter().any(|n| n == file),
            "workflows/{file} is missing"
        );
        let def = read_json(&repo().join("workflows").join(file));
        assert_eq!(def["kind"], kind, "workflows/{file}");
        assert!(
            def["input_schema"].is_object(),
            "workflows/{file} declares no input_schema"
        );
    }
}

#[test]
fn every_workflow_validates() {
    let files = workflow_files();
    assert!(!files.is_empty());
    let args: Vec<String> = std::iter::once("validate".to_owned())
        .chain(files.iter().map(|p| p.to_string_lossy().into_owned()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = eventflow(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), files.len());
}

#[test]
fn every_workflow_can_be_drawn() {
    for file in workflow_files() {
        let out = eventflow(&["graph", &file.to_string_lossy()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        let chart = text(&out.stdout);
        assert!(chart.starts_with("flowchart TD\n"), "{}", file.display());
        let def = read_json(&file);
        for step in def["steps"].as_array().expect("steps") {
            let id = step["id"].as_str().expect("a step id");
            assert!(
                chart.contains(&format!("    s_{id}[")) || chart.contains(&format!("    s_{id}(")),
                "{}: step {id} is not drawn:\n{chart}",
                file.display()
            );
        }
    }
}

#[test]
fn every_workflow_follows_the_published_schema_it_names() {
    let schema = read_json(&repo().join("schema/workflow.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("the published schema compiles");
    for file in workflow_files() {
        let doc = read_json(&file);
        // The reference is relative to the file, as editors resolve it.
        assert_eq!(
            doc["$schema"],
            "../schema/workflow.schema.json",
            "{}",
            file.display()
        );
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

// ---- the example inputs ----------------------------------------------------------------------

#[test]
fn the_example_inputs_satisfy_event_launch() {
    let launch = compile("event-launch.json");
    for example in [
        "examples/event-launch.input.json",
        "examples/event-launch.rollback.input.json",
    ] {
        let input = read_json(&repo().join(example));
        if let Err(problems) = launch.check_input(&input) {
            panic!("{example} does not satisfy event-launch's input_schema: {problems:#?}");
        }
    }
    let rollback = read_json(&repo().join("examples/event-launch.rollback.input.json"));
    assert_eq!(rollback["demo"]["fail_after_announce"], true);
    let normal = read_json(&repo().join("examples/event-launch.input.json"));
    assert_eq!(normal["demo"]["fail_after_announce"], false);
}

#[test]
fn event_launch_starts_attendee_nurture_with_an_input_it_accepts() {
    use eventflow_engine::expr::{NoSteps, Scope};

    let launch = compile("event-launch.json");
    let nurture = compile("attendee-nurture.json");
    let step = launch
        .steps()
        .iter()
        .find(|s| s.action.as_deref() == Some("workflow.start"))
        .expect("event-launch starts a workflow");
    let input = read_json(&repo().join("examples/event-launch.input.json"));
    let now = "2026-05-04T09:00:00Z".parse().expect("a timestamp");
    let start = step
        .input
        .eval(&Scope::new(&input, &NoSteps, now))
        .expect("the start input evaluates");
    assert_eq!(start["workflow"], nurture.workflow_id);
    if let Err(problems) = nurture.check_input(&start["input"]) {
        panic!("attendee-nurture refuses what event-launch gives it: {problems:#?}");
    }
}

#[test]
fn a_wrong_example_input_is_refused() {
    let launch = compile("event-launch.json");
    let mut input = read_json(&repo().join("examples/event-launch.input.json"));
    input["demo"]["flaky_times"] = serde_json::json!("once");
    input["sponsors"][0]["tier"] = serde_json::json!("diamond");
    let problems = launch
        .check_input(&input)
        .expect_err("a wrong input is refused");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"$.demo.flaky_times"), "{paths:?}");
    assert!(paths.contains(&"$.sponsors[0].tier"), "{paths:?}");
}
