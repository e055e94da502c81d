//! validate(): every problem at once, each with its JSON path and a plain sentence.

mod support;

use eventflow_engine::*;
use serde_json::json;
use support::*;

fn wf(steps: serde_json::Value) -> serde_json::Value {
    json!({"id": "t", "name": "test", "kind": "custom", "steps": steps})
}

fn find<'p>(problems: &'p [Problem], path: &str) -> &'p Problem {
    problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path} in {problems:#?}"))
}

#[test]
fn a_valid_definition_has_no_problems() {
    let p = problems(wf(json!([
        {"id": "a", "action": "undoable", "compensate": true},
        {"id": "b", "action": "act", "depends_on": ["a"], "input": {"x": "${steps.a.output.id}"}}
    ])));
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(wf(json!([
        {"id": "a", "action": "act", "depends_on": ["c"]},
        {"id": "b", "action": "act", "depends_on": ["a"]},
        {"id": "c", "action": "act", "depends_on": ["b"]},
        {"id": "d", "action": "nope"},
        {"id": "d", "action": "act", "depends_on": ["ghost"]},
        {"id": "e", "action": "act", "when": "input.x >"}
    ])));
    let cycle = p
        .iter()
        .find(|p| p.message.contains("form a cycle"))
        .expect("cycle");
    assert!(
        cycle.message.contains("`a`")
            && cycle.message.contains("`b`")
            && cycle.message.contains("`c`"),
        "{cycle}"
    );
    assert!(
        find(&p, "$.steps[3].action")
            .message
            .contains("`nope` is not an action")
    );
    assert!(
        find(&p, "$.steps[4].id")
            .message
            .contains("already used by $.steps[3]")
    );
    assert!(
        find(&p, "$.steps[4].depends_on[0]")
            .message
            .contains("`ghost` is neither a step")
    );
    assert!(
        find(&p, "$.steps[5].when")
            .message
            .contains("does not parse as CEL")
    );
}

#[test]
fn unknown_actions_get_a_suggestion() {
    let p = problems(wf(json!([{"id": "a", "action": "email.sned"}])));
    assert!(
        find(&p, "$.steps[0].action")
            .message
            .contains("did you mean `email.send`?")
    );
}

#[test]
fn expressions_may_only_read_upstream_steps() {
    let p = problems(wf(json!([
        {"id": "a", "action": "act", "input": {"v": "${steps.b.output}"}},
        {"id": "b", "action": "act"},
        {"id": "c", "action": "act", "input": {"v": "${steps.zz.output}"}},
        {"id": "d", "action": "act", "input": {"v": "${foo + 1}"}},
        {"id": "e", "action": "act", "input": {"v": "${item}"}}
    ])));
    assert!(
        find(&p, "$.steps[0].input.v")
            .message
            .contains("does not come before this step")
    );
    assert!(
        find(&p, "$.steps[2].input.v")
            .message
            .contains("`zz`, which does not exist")
    );
    assert!(
        find(&p, "$.steps[3].input.v")
            .message
            .contains("names `foo`, which is not defined")
    );
    assert!(
        find(&p, "$.steps[4].input.v")
            .message
            .contains("only in a step with for_each")
    );
}

#[test]
fn a_compensation_needs_an_action_that_can_undo() {
    let p = problems(wf(json!([
        {"id": "a", "action": "act", "compensate": true},
        {"id": "b", "action": "act", "compensate": {"action": "undoable", "input": {"id": "${steps.b.output.id}"}}},
        {"id": "w", "wait": {"duration": "1d"}, "compensate": true}
    ])));
    assert!(
        find(&p, "$.steps[0].compensate")
            .message
            .contains("declares no compensation")
    );
    assert!(
        !p.iter().any(|p| p.path.starts_with("$.steps[1]")),
        "{p:#?}"
    );
    assert!(
        find(&p, "$.steps[2].compensate")
            .message
            .contains("nothing to compensate")
    );
}

#[test]
fn loops_fan_outs_and_waits_need_what_they_need() {
    let p = problems(wf(json!([
        {"id": "a", "action": "act", "loop": {"until": "", "max_iterations": 0}},
        {"id": "b", "action": "act", "for_each": {"items": "input.l", "concurrency": 0, "tolerated_failure": 1.5}},
        {"id": "c", "action": "act", "for_each": {"items": "input.l"}, "loop": {"until": "true", "max_iterations": 2}},
        {"id": "d", "wait": {}},
        {"id": "e", "wait": {"until": "input.at", "time_zone": "Mars/Olympus"}},
        {"id": "f"}
    ])));
    assert!(
        find(&p, "$.steps[0].loop.max_iterations")
            .message
            .contains("between 1 and")
    );
    assert!(
        find(&p, "$.steps[0].loop.until")
            .message
            .contains("until is empty")
    );
    assert!(
        find(&p, "$.steps[1].for_each.concurrency")
            .message
            .contains("between 1 and")
    );
    assert!(
        find(&p, "$.steps[1].for_each.tolerated_failure")
            .message
            .contains("share between 0")
    );
    assert!(
        find(&p, "$.steps[2]")
            .message
            .contains("both for_each and loop")
    );
    assert!(
        find(&p, "$.steps[3].wait")
            .message
            .contains("needs a duration")
    );
    assert!(
        find(&p, "$.steps[4].wait.time_zone")
            .message
            .contains("not an IANA time zone")
    );
    assert!(
        find(&p, "$.steps[5]")
            .message
            .contains("neither an action nor a wait")
    );
}

#[test]
fn limits_on_steps_size_and_nesting() {
    let many: Vec<serde_json::Value> = (0..501)
        .map(|i| json!({"id": format!("s{i}"), "action": "act"}))
        .collect();
    let p = problems(wf(json!(many)));
    assert!(
        find(&p, "$.steps")
            .message
            .contains("501 steps, the limit is 500")
    );

    let big = "x".repeat(300 * 1024);
    let p = problems(wf(
        json!([{"id": "a", "action": "act", "input": {"blob": big}}]),
    ));
    assert!(find(&p, "$").message.contains("the limit is 262144"));

    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let p = problems(wf(json!([{"id": "a", "action": "act", "input": deep}])));
    assert!(
        find(&p, "$")
            .message
            .contains("levels deep, the limit is 32")
    );
}

#[test]
fn ids_and_policies_are_checked() {
    let p = problems(
        json!({"id": "Bad Id", "name": "x", "kind": "custom", "steps": [
            {"id": "Step-1", "action": "act"},
            {"id": "a", "action": "act", "on_failure": {"rollback_to": "b"}},
            {"id": "b", "action": "act", "depends_on": ["a"], "retry": {"max_attempts": 0, "backoff_rate": 0.5}}
        ]}),
    );
    assert!(find(&p, "$.id").message.contains("not a workflow id"));
    assert!(find(&p, "$.steps[0].id").message.contains("not a step id"));
    assert!(
        find(&p, "$.steps[1].on_failure.rollback_to")
            .message
            .contains("does not come before")
    );
    assert!(
        find(&p, "$.steps[2].retry.max_attempts")
            .message
            .contains("between 1")
    );
    assert!(
        find(&p, "$.steps[2].retry.backoff_rate")
            .message
            .contains("at least 1.0")
    );
}

#[test]
fn triggers_are_checked() {
    let p = problems(json!({"id": "t", "name": "x", "kind": "attendee_nurture",
        "triggers": [
            {"type": "cron", "expression": "0 9 * *", "time_zone": "Europe/Berlin"},
            {"type": "event_relative", "field": "starts_at", "offsets": ["-14d", "-7d"], "at": "9am"},
            {"type": "webhook", "name": "launch"}
        ],
        "steps": [{"id": "a", "action": "act"}]}));
    assert!(
        find(&p, "$.triggers[0].expression")
            .message
            .contains("has 4 fields")
    );
    assert!(find(&p, "$.triggers[1].at").message.contains("HH:MM"));
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn an_event_relative_input_reads_only_the_event() {
    let p = problems(json!({"id": "t", "name": "x", "kind": "attendee_nurture",
        "triggers": [
            {"type": "event_relative", "field": "starts_at", "offsets": ["-1d"],
             "input": {"event": "${event}", "who": "${input.attendees}"}},
            {"type": "event_relative", "field": "starts_at", "offsets": ["-1d"],
             "input": {"bad": "${event.}"}}
        ],
        "steps": [{"id": "a", "action": "act"}]}));
    assert!(
        find(&p, "$.triggers[0].input.who")
            .message
            .contains("reads only event"),
        "{p:#?}"
    );
    find(&p, "$.triggers[1].input.bad");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn a_run_input_is_checked_against_input_schema() {
    let v = version(json!({"id": "t", "name": "x", "kind": "event_launch",
        "input_schema": {"type": "object", "required": ["event"],
            "properties": {"event": {"type": "object", "required": ["starts_at"],
                "properties": {"starts_at": {"type": "string", "format": "date-time"}}}}},
        "steps": [{"id": "a", "action": "act"}]}));
    assert!(
        v.check_input(&json!({"event": {"starts_at": "2026-05-04T09:00:00Z"}}))
            .is_ok()
    );
    let p = v
        .check_input(&json!({"event": {"starts_at": 5}}))
        .expect_err("bad input");
    assert_eq!(p[0].path, "$.event.starts_at");
    assert!(p[0].message.contains("input_schema"), "{}", p[0].message);
    let p = v.check_input(&json!({})).expect_err("missing");
    assert_eq!(p[0].path, "$");
}

#[test]
fn an_invalid_input_schema_is_a_problem() {
    let p = problems(json!({"id": "t", "name": "x", "kind": "custom",
        "input_schema": {"type": "thing"}, "steps": [{"id": "a", "action": "act"}]}));
    assert!(p[0].path.starts_with("$.input_schema"), "{p:#?}");
    assert!(p[0].message.contains("not a valid JSON Schema"));
}

#[test]
fn cron_expressions_durations_and_groups_are_checked_in_depth() {
    let p = problems(json!({"id": "t", "name": "x", "kind": "custom",
    "triggers": [
        {"type": "cron", "expression": "99 99 * * *"}
    ],
    "steps": [
        {"id": "a", "action": "act", "parallel_group": "g", "depends_on": ["g"]},
        {"id": "b", "wait": {"duration": "100000000d"}},
        {"id": "c", "action": "act", "parallel_group": "bad group"},
        {"id": "d", "action": "act", "when": "${false}"},
        {"id": "e", "action": "teleport"}
    ]}));
    assert!(
        find(&p, "$.triggers[0].expression")
            .message
            .contains("not a valid cron expression")
    );
    assert!(
        find(&p, "$.steps[0].depends_on[0]")
            .message
            .contains("its own parallel group")
    );
    assert!(
        find(&p, "$.steps[1].wait.duration")
            .message
            .contains("longer than the limit")
    );
    assert!(
        find(&p, "$.steps[2].parallel_group")
            .message
            .contains("not a group name")
    );
    assert!(find(&p, "$.steps[3].when").message.contains("always false"));
    assert!(
        find(&p, "$.steps[4].action")
            .message
            .contains("the actions are: act, email.send")
    );
}

fn with_deps(extra: serde_json::Value) -> serde_json::Value {
    let mut def = wf(json!([{"id": "a", "action": "act"}]));
    if let (Some(def), Some(extra)) = (def.as_object_mut(), extra.as_object()) {
        def.extend(extra.clone());
    }
    def
}

#[test]
fn valid_dependencies_of_each_type_have_no_problems() {
    let p = problems(with_deps(json!({
        "correlation_key": "${input.event.id}",
        "dependencies": [
            {"workflow": "event-launch", "type": "blocking"},
            {"workflow": "sponsor-outreach", "type": "parallel", "input": {"event": "${input.event}"}},
            {"workflow": "attendee-nurture", "type": "conditional",
             "when": "output.publish.ok && input.event.id != ''",
             "input": {"event": "${input.event}", "page": "${output.publish}"}}
        ]
    })));
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn each_dependency_mistake_is_a_problem_at_its_path() {
    let p = problems(with_deps(json!({
        "dependencies": [
            {"workflow": "event-launch", "type": "blocking", "when": "true", "input": {}},
            {"workflow": "t", "type": "parallel", "input": {"x": "${output.y}"}},
            {"workflow": "Not An Id", "type": "conditional", "when": "output.x >"},
            {"workflow": "nurture", "type": "conditional", "when": "steps.a.output.ok || now > now"},
            {"workflow": "event-launch", "type": "parallel"}
        ]
    })));
    assert!(
        find(&p, "$.dependencies[0]")
            .message
            .contains("declares none; add a correlation_key")
    );
    assert!(
        find(&p, "$.dependencies[0].when")
            .message
            .contains("only a conditional dependency has a condition")
    );
    assert!(
        find(&p, "$.dependencies[0].input")
            .message
            .contains("starts nothing")
    );
    assert!(
        find(&p, "$.dependencies[1].workflow")
            .message
            .contains("depends on itself")
    );
    assert!(
        find(&p, "$.dependencies[1].input.x")
            .message
            .contains("reads `output`")
    );
    assert!(
        find(&p, "$.dependencies[2].workflow")
            .message
            .contains("not a workflow id")
    );
    assert!(
        find(&p, "$.dependencies[2].when")
            .message
            .contains("does not parse as CEL")
    );
    let stray: Vec<_> = p
        .iter()
        .filter(|p| p.path == "$.dependencies[3].when")
        .map(|p| p.message.as_str())
        .collect();
    assert!(
        stray.iter().any(|m| m.contains("reads `steps.a`")),
        "{stray:?}"
    );
    assert!(stray.iter().any(|m| m.contains("reads `now`")), "{stray:?}");
    assert!(
        find(&p, "$.dependencies[4].workflow")
            .message
            .contains("already a dependency at $.dependencies[0]")
    );
}

#[test]
fn a_correlation_key_is_an_expression_over_the_input_only() {
    let p = problems(with_deps(json!({"correlation_key": "input.event.id"})));
    assert!(
        find(&p, "$.correlation_key")
            .message
            .contains("is not an expression")
    );
    let p = problems(with_deps(
        json!({"correlation_key": "${steps.a.output.id}"}),
    ));
    assert!(
        find(&p, "$.correlation_key")
            .message
            .contains("reads only input")
    );
    let p = problems(with_deps(json!({"correlation_key": "${input.(}"})));
    assert!(
        find(&p, "$.correlation_key")
            .message
            .contains("does not parse")
    );
}

#[test]
fn an_unknown_field_in_a_dependency_is_refused() {
    let def = with_deps(json!({"dependencies": [
        {"workflow": "event-launch", "type": "parallel", "delay": "1d"}
    ]}));
    let err = serde_json::from_value::<Definition>(def).expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `delay`"), "{err}");
    let def = with_deps(json!({"dependencies": [{"workflow": "event-launch", "type": "soon"}]}));
    let err = serde_json::from_value::<Definition>(def).expect_err("unknown type");
    assert!(err.to_string().contains("unknown variant `soon`"), "{err}");
}

#[test]
fn the_correlation_key_and_dependency_expressions_evaluate() {
    let def: Definition = serde_json::from_value(with_deps(json!({
        "correlation_key": "${input.event.id}",
        "dependencies": [{"workflow": "launch", "type": "conditional",
            "when": "output.publish.sold > 10", "input": {"id": "${input.event.id}"}}]
    })))
    .expect("parses");
    let v = Version::compile(def, 1, &registry()).expect("valid");
    let input = json!({"event": {"id": "evt-1"}});
    assert_eq!(
        v.correlation_key(&input).expect("key"),
        Some("evt-1".into())
    );
    assert_eq!(
        v.correlation_key(&json!({"event": {"id": 42}}))
            .expect("key"),
        Some("42".into())
    );
    let bad = v
        .correlation_key(&json!({"event": {"id": ["x"]}}))
        .expect_err("a list");
    assert!(
        bad.to_string().contains("non-empty string or a number"),
        "{bad}"
    );
    let dep = &v.dependencies()[0];
    let output = json!({"publish": {"sold": 11}});
    assert!(dep.holds(&input, Some(&output)).expect("evaluates"));
    assert!(
        !dep.holds(&input, Some(&json!({"publish": {"sold": 3}})))
            .expect("evaluates")
    );
    assert_eq!(
        dep.input_for(&input, Some(&output)).expect("input"),
        json!({"id": "evt-1"})
    );
}

#[test]
fn a_cycle_through_blocking_and_parallel_dependencies_is_found_and_named() {
    let def = |id: &str, deps: serde_json::Value| -> Definition {
        serde_json::from_value(json!({"id": id, "name": id, "kind": "custom",
            "correlation_key": "${input.event}", "dependencies": deps,
            "steps": [{"id": "a", "action": "act"}]}))
        .expect("parses")
    };
    // launch starts nurture (parallel); nurture waits for followup; followup waits for launch
    // ... and launch waits for nurture: launch → nurture → launch
    let launch = def(
        "launch",
        json!([{"workflow": "nurture", "type": "blocking"}]),
    );
    let nurture = def(
        "nurture",
        json!([{"workflow": "launch", "type": "parallel"}]),
    );
    let cycle = dependency_cycle([&launch, &nurture]).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    assert!(cycle.contains(&"launch".to_owned()) && cycle.contains(&"nurture".to_owned()));
    // A longer one
    let a = def("a", json!([{"workflow": "c", "type": "blocking"}]));
    let b = def("b", json!([{"workflow": "a", "type": "parallel"}]));
    let c = def("c", json!([{"workflow": "b", "type": "blocking"}]));
    assert_eq!(
        dependency_cycle([&a, &b, &c]),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    // A chain, a diamond, and a loop closed only by a conditional dependency are fine
    let d = def(
        "d",
        json!([{"workflow": "b", "type": "blocking"}, {"workflow": "a", "type": "parallel"}]),
    );
    let c2 = def("c", json!([{"workflow": "b", "type": "conditional"}]));
    assert_eq!(dependency_cycle([&a, &b, &c2, &d]), None);
}
