//! Given / when / then tests of schedules: cron and rate on a virtual clock, pause, catch-up,
//! and event-relative plans that follow the event's dates.

use chrono::{DateTime, TimeDelta, Utc};
use eventflow_engine::schedule::MAX_COUNTED_SKIPS;
use eventflow_engine::*;
use serde_json::{Value, json};

fn t(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect("timestamp")
        .with_timezone(&Utc)
}

fn trigger(v: Value) -> Trigger {
    serde_json::from_value(v).expect("trigger")
}

fn berlin_daily_nine() -> Trigger {
    trigger(json!({"type": "cron", "expression": "0 9 * * *", "time_zone": "Europe/Berlin"}))
}

/// Advances a virtual clock hour by hour from `from` to `to`, calling `due` at each tick and
/// storing the state as a host would; returns every firing.
fn run_clock(mut schedule: Schedule, from: Timestamp, to: Timestamp) -> (Vec<Firing>, Schedule) {
    let mut fired = Vec::new();
    let mut now = from;
    while now <= to {
        let d = due(&schedule, now).expect("due");
        fired.extend(d.firings);
        schedule = d.schedule;
        now += TimeDelta::hours(1);
    }
    (fired, schedule)
}

fn slots(firings: &[Firing]) -> Vec<Timestamp> {
    firings.iter().map(|f| f.slot).collect()
}

// ---- Cron in a time zone across daylight saving ----------------------------------------------

#[test]
fn a_daily_nine_oclock_berlin_cron_stays_at_nine_across_the_spring_change() {
    // Given a daily 09:00 Europe/Berlin schedule created on 25 March 2026
    let start = t("2026-03-25T00:00:00Z");
    let schedule = Schedule::new("s1", "nurture", berlin_daily_nine(), start).expect("schedule");
    // When a virtual clock runs hour by hour until 2 April
    let (fired, _) = run_clock(schedule, start, t("2026-04-02T23:00:00Z"));
    // Then it fired once a day at 09:00 local: 08:00Z in winter time, 07:00Z from 29 March
    let expected: Vec<Timestamp> = [
        "2026-03-25T08:00:00Z",
        "2026-03-26T08:00:00Z",
        "2026-03-27T08:00:00Z",
        "2026-03-28T08:00:00Z",
        "2026-03-29T07:00:00Z",
        "2026-03-30T07:00:00Z",
        "2026-03-31T07:00:00Z",
        "2026-04-01T07:00:00Z",
        "2026-04-02T07:00:00Z",
    ]
    .into_iter()
    .map(t)
    .collect();
    assert_eq!(slots(&fired), expected);
    assert!(fired.iter().all(|f| f.skipped == 0));
    assert!(fired.iter().all(|f| f.workflow_id == "nurture"));
}

#[test]
fn a_daily_nine_oclock_berlin_cron_stays_at_nine_across_the_autumn_change() {
    let start = t("2026-10-20T00:00:00Z");
    let schedule = Schedule::new("s1", "nurture", berlin_daily_nine(), start).expect("schedule");
    let (fired, _) = run_clock(schedule, start, t("2026-10-28T23:00:00Z"));
    // Summer time until 25 October (07:00Z), winter time from then on (08:00Z)
    let expected: Vec<Timestamp> = [
        "2026-10-20T07:00:00Z",
        "2026-10-21T07:00:00Z",
        "2026-10-22T07:00:00Z",
        "2026-10-23T07:00:00Z",
        "2026-10-24T07:00:00Z",
        "2026-10-25T08:00:00Z",
        "2026-10-26T08:00:00Z",
        "2026-10-27T08:00:00Z",
        "2026-10-28T08:00:00Z",
    ]
    .into_iter()
    .map(t)
    .collect();
    assert_eq!(slots(&fired), expected);
}

#[test]
fn next_fire_table() {
    // (expression, zone, after, next): the daylight-saving rules one case each
    let cases = [
        // 02:30 does not exist in Berlin on 29 March 2026: the first instant after the gap
        (
            "30 2 * * *",
            Some("Europe/Berlin"),
            "2026-03-28T02:00:00Z",
            "2026-03-29T01:00:00Z",
        ),
        // and the next day it is 02:30 summer time again
        (
            "30 2 * * *",
            Some("Europe/Berlin"),
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
        ),
        // several matches inside the gap fire once, at the gap's end
        (
            "*/15 2 * * *",
            Some("Europe/Berlin"),
            "2026-03-29T00:50:00Z",
            "2026-03-29T01:00:00Z",
        ),
        (
            "*/15 2 * * *",
            Some("Europe/Berlin"),
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z",
        ),
        // 02:30 happens twice on 25 October 2026: it fires at the first one only
        (
            "30 2 * * *",
            Some("Europe/Berlin"),
            "2026-10-24T12:00:00Z",
            "2026-10-25T00:30:00Z",
        ),
        (
            "30 2 * * *",
            Some("Europe/Berlin"),
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ),
        // without a zone, UTC
        (
            "0 9 * * 1",
            None,
            "2026-03-25T12:00:00Z",
            "2026-03-30T09:00:00Z",
        ),
        // "after" is strict
        (
            "0 9 * * *",
            None,
            "2026-03-25T09:00:00Z",
            "2026-03-26T09:00:00Z",
        ),
    ];
    for (expression, zone, after, next) in cases {
        let tr = trigger(json!({"type": "cron", "expression": expression, "time_zone": zone}));
        assert_eq!(
            next_fire(&tr, t(after)).expect("next"),
            Some(t(next)),
            "{expression} in {zone:?} after {after}"
        );
    }
}

#[test]
fn a_cron_at_half_past_two_on_the_spring_forward_day_fires_once_after_the_gap() {
    // Given a 02:30 Berlin cron and a clock running through 29 March 2026
    let tr =
        trigger(json!({"type": "cron", "expression": "30 2 * * *", "time_zone": "Europe/Berlin"}));
    let start = t("2026-03-28T12:00:00Z");
    let schedule = Schedule::new("s", "w", tr, start).expect("schedule");
    let (fired, _) = run_clock(schedule, start, t("2026-03-30T12:00:00Z"));
    // Then the skipped 02:30 fires at 03:00 summer time, and the next day at 02:30 again
    assert_eq!(
        slots(&fired),
        vec![t("2026-03-29T01:00:00Z"), t("2026-03-30T00:30:00Z")]
    );
}

#[test]
fn a_half_past_two_cron_fires_once_on_the_autumn_day_whose_two_thirty_happens_twice() {
    // Given a 02:30 Berlin cron, and a clock ticking every 15 minutes through 25 October 2026
    let tr =
        trigger(json!({"type": "cron", "expression": "30 2 * * *", "time_zone": "Europe/Berlin"}));
    let mut schedule = Schedule::new("s", "w", tr, t("2026-10-24T12:00:00Z")).expect("schedule");
    let mut fired = Vec::new();
    let mut now = t("2026-10-24T12:00:00Z");
    while now <= t("2026-10-26T12:00:00Z") {
        let d = due(&schedule, now).expect("due");
        fired.extend(d.firings);
        schedule = d.schedule;
        now += TimeDelta::minutes(15);
    }
    // Then 02:30 summer time fires, the repeated 02:30 winter time (01:30Z) does not
    assert_eq!(
        slots(&fired),
        vec![t("2026-10-25T00:30:00Z"), t("2026-10-26T01:30:00Z")]
    );
}

#[test]
fn an_hourly_cron_across_both_changes_fires_once_per_wall_clock_hour() {
    let hourly =
        trigger(json!({"type": "cron", "expression": "0 * * * *", "time_zone": "Europe/Berlin"}));
    let walk = |from: &str, to: &str| {
        let mut out = Vec::new();
        let mut at = t(from);
        while let Some(next) = next_fire(&hourly, at).expect("next") {
            if next > t(to) {
                break;
            }
            out.push(next);
            at = next;
        }
        out
    };
    // Spring: 01:00 CET, then 02:00 does not exist and 03:00 CEST is the same instant: once
    assert_eq!(
        walk("2026-03-28T23:30:00Z", "2026-03-29T02:00:00Z"),
        vec![
            t("2026-03-29T00:00:00Z"),
            t("2026-03-29T01:00:00Z"),
            t("2026-03-29T02:00:00Z"),
        ]
    );
    // Autumn: 02:00 happens twice (00:00Z and 01:00Z); it fires at the first only
    assert_eq!(
        walk("2026-10-24T22:30:00Z", "2026-10-25T03:00:00Z"),
        vec![
            t("2026-10-24T23:00:00Z"),
            t("2026-10-25T00:00:00Z"),
            t("2026-10-25T02:00:00Z"),
            t("2026-10-25T03:00:00Z"),
        ]
    );
}

// ---- Rate ---------------------------------------------------------------------------------

#[test]
fn a_rate_schedule_fires_every_interval_from_its_creation() {
    let tr = trigger(json!({"type": "rate", "every": "6h", "input": {"batch": true}}));
    let start = t("2026-05-01T00:00:00Z");
    let schedule = Schedule::new("r", "w", tr, start).expect("schedule");
    assert_eq!(schedule.next_due, Some(t("2026-05-01T06:00:00Z")));
    let (fired, schedule) = run_clock(schedule, start, t("2026-05-02T00:00:00Z"));
    assert_eq!(
        slots(&fired),
        vec![
            t("2026-05-01T06:00:00Z"),
            t("2026-05-01T12:00:00Z"),
            t("2026-05-01T18:00:00Z"),
            t("2026-05-02T00:00:00Z"),
        ]
    );
    assert_eq!(fired[0].input, Some(json!({"batch": true})));
    assert_eq!(schedule.last_fired, Some(t("2026-05-02T00:00:00Z")));
    assert_eq!(schedule.next_due, Some(t("2026-05-02T06:00:00Z")));
}

// ---- Pause and catch-up -------------------------------------------------------------------

#[test]
fn a_paused_schedule_fires_nothing_keeps_its_slot_and_resumes_without_catching_up() {
    // Given a daily schedule, paused before its 09:00 slot
    let start = t("2026-05-04T00:00:00Z");
    let mut schedule = Schedule::new("s", "w", berlin_daily_nine(), start).expect("schedule");
    let slot = schedule.next_due;
    schedule.pause();
    // When the clock runs three days
    let (fired, mut schedule) = run_clock(schedule, start, t("2026-05-07T00:00:00Z"));
    // Then nothing fired and the next slot is the one it had
    assert!(fired.is_empty());
    assert_eq!(schedule.next_due, slot);
    assert!(schedule.paused);
    // When it is resumed on 7 May at 10:00 local
    schedule.resume(t("2026-05-07T08:00:00Z")).expect("resume");
    // Then the slots missed while paused are dropped; the next is 8 May 09:00 local
    assert!(!schedule.paused);
    assert_eq!(schedule.next_due, Some(t("2026-05-08T07:00:00Z")));
    let d = due(&schedule, t("2026-05-07T08:00:00Z")).expect("due");
    assert!(d.firings.is_empty());
    let d = due(&d.schedule, t("2026-05-08T07:00:00Z")).expect("due");
    assert_eq!(slots(&d.firings), vec![t("2026-05-08T07:00:00Z")]);
}

#[test]
fn after_downtime_a_schedule_fires_once_for_the_latest_slot_and_counts_the_skipped() {
    // Given a daily schedule that last fired on Monday 4 May
    let start = t("2026-05-04T00:00:00Z");
    let d = due(
        &Schedule::new("s", "w", berlin_daily_nine(), start).expect("schedule"),
        t("2026-05-04T07:00:00Z"),
    )
    .expect("due");
    assert_eq!(d.firings.len(), 1);
    // When the host comes back on Friday at 10:00 local
    let d = due(&d.schedule, t("2026-05-08T08:00:00Z")).expect("due");
    // Then one firing, for Friday's slot, with Tuesday to Thursday skipped
    assert_eq!(d.firings.len(), 1);
    assert_eq!(d.firings[0].slot, t("2026-05-08T07:00:00Z"));
    assert_eq!(d.firings[0].skipped, 3);
    assert_eq!(d.schedule.last_fired, Some(t("2026-05-08T07:00:00Z")));
    assert_eq!(d.schedule.next_due, Some(t("2026-05-09T07:00:00Z")));
    // And calling again at the same instant fires nothing more
    assert!(
        due(&d.schedule, t("2026-05-08T08:00:00Z"))
            .expect("due")
            .firings
            .is_empty()
    );
}

#[test]
fn catch_up_table() {
    // (trigger, last slot, now, fired slot, skipped)
    let cases = [
        (
            json!({"type": "rate", "every": "1h"}),
            "2026-05-01T00:00:00Z",
            "2026-05-01T05:30:00Z",
            "2026-05-01T05:00:00Z",
            4,
        ),
        (
            json!({"type": "cron", "expression": "0 * * * *"}),
            "2026-05-01T00:00:00Z",
            "2026-05-01T05:30:00Z",
            "2026-05-01T05:00:00Z",
            4,
        ),
        // a minutely cron down for a month: the count saturates, the slot is still the latest
        (
            json!({"type": "cron", "expression": "* * * * *"}),
            "2026-05-01T00:00:00Z",
            "2026-06-01T00:00:30Z",
            "2026-06-01T00:00:00Z",
            MAX_COUNTED_SKIPS,
        ),
        (
            json!({"type": "rate", "every": "1m"}),
            "2026-05-01T00:00:00Z",
            "2026-06-01T00:00:30Z",
            "2026-06-01T00:00:00Z",
            MAX_COUNTED_SKIPS,
        ),
    ];
    for (tr, last, now, slot, skipped) in cases {
        let tr = trigger(tr);
        let schedule = Schedule {
            id: "s".into(),
            workflow_id: "w".into(),
            next_due: next_fire(&tr, t(last)).expect("next"),
            trigger: tr,
            paused: false,
            last_fired: Some(t(last)),
        };
        let d = due(&schedule, t(now)).expect("due");
        assert_eq!(d.firings.len(), 1, "{now}");
        assert_eq!(d.firings[0].slot, t(slot), "{now}");
        assert_eq!(d.firings[0].skipped, skipped, "{now}");
        assert!(d.schedule.next_due.expect("next") > t(now));
    }
}

#[test]
fn schedule_state_round_trips_through_json() {
    let s = Schedule::new("s", "w", berlin_daily_nine(), t("2026-05-04T00:00:00Z")).expect("s");
    let back: Schedule =
        serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("schedule");
    assert_eq!(back, s);
}

// ---- Event-relative -----------------------------------------------------------------------

fn event(starts_at: &str) -> Value {
    json!({
        "id": "evt-1",
        "starts_at": starts_at,
        "ends_at": "2026-04-03T18:00:00+02:00",
        "time_zone": "Europe/Berlin"
    })
}

fn before_start() -> Trigger {
    trigger(json!({"type": "event_relative", "field": "starts_at",
                   "offsets": ["-14d", "-7d", "-1d"], "at": "09:00"}))
}

fn plan_of(runs: &[PlannedRun]) -> Vec<(String, Timestamp)> {
    runs.iter().map(|r| (r.key.clone(), r.fire_at)).collect()
}

#[test]
fn reminders_before_the_start_and_after_the_end_are_at_nine_local() {
    // Given an event starting 2 April 2026 10:00 Berlin (after the spring change)
    let ev = event("2026-04-02T10:00:00+02:00");
    let now = t("2026-03-01T00:00:00Z");
    // When planning -14d, -7d, -1d at 09:00 on starts_at, and +1d at 09:00 on ends_at
    let before = plan_event(&before_start(), &ev, now).expect("plan");
    let after = plan_event(
        &trigger(json!({"type": "event_relative", "field": "ends_at",
                        "offsets": ["+1d"], "at": "09:00"})),
        &ev,
        now,
    )
    .expect("plan");
    // Then each is 09:00 local: winter time for the first two, summer time after
    assert_eq!(
        plan_of(&before),
        vec![
            ("evt-1/starts_at-14d".into(), t("2026-03-19T08:00:00Z")),
            ("evt-1/starts_at-7d".into(), t("2026-03-26T08:00:00Z")),
            ("evt-1/starts_at-1d".into(), t("2026-04-01T07:00:00Z")),
        ]
    );
    assert_eq!(
        plan_of(&after),
        vec![("evt-1/ends_at+1d".into(), t("2026-04-04T07:00:00Z"))]
    );
}

#[test]
fn event_relative_table() {
    // (record's starts_at, offsets, at, fire instants): dates, hour offsets, no `at`
    let now = t("2026-01-01T00:00:00Z");
    let cases = [
        // a date is midnight in the event's zone; -1d at 09:00 is the day before at 09:00
        (
            json!("2026-04-02"),
            json!(["-1d"]),
            json!("09:00"),
            vec!["2026-04-01T07:00:00Z"],
        ),
        // an hour offset is exact time, without `at` the event's own time of day is kept
        (
            json!("2026-04-02T10:00:00+02:00"),
            json!(["-2h", "-1d"]),
            Value::Null,
            vec!["2026-04-01T08:00:00Z", "2026-04-02T06:00:00Z"],
        ),
        // -7d without `at` across the spring change keeps 10:00 local
        (
            json!("2026-04-02T10:00:00+02:00"),
            json!(["-7d"]),
            Value::Null,
            vec!["2026-03-26T09:00:00Z"],
        ),
    ];
    for (starts_at, offsets, at, expected) in cases {
        let tr = trigger(json!({"type": "event_relative", "field": "starts_at",
                                "offsets": offsets, "at": at}));
        let ev = json!({"id": 42, "starts_at": starts_at, "time_zone": "Europe/Berlin"});
        let runs = plan_event(&tr, &ev, now).expect("plan");
        let got: Vec<Timestamp> = runs.iter().map(|r| r.fire_at).collect();
        let want: Vec<Timestamp> = expected.into_iter().map(t).collect();
        assert_eq!(got, want, "{starts_at} {offsets}");
        assert!(runs.iter().all(|r| r.key.starts_with("42/starts_at")));
    }
}

#[test]
fn instants_already_past_are_not_planned() {
    let ev = event("2026-04-02T10:00:00+02:00");
    let runs = plan_event(&before_start(), &ev, t("2026-03-26T08:00:00Z")).expect("plan");
    assert_eq!(
        plan_of(&runs),
        vec![("evt-1/starts_at-1d".into(), t("2026-04-01T07:00:00Z"))]
    );
}

#[test]
fn moving_the_start_a_week_later_replans_the_reminders() {
    // Given the plan for a 2 April start, made on 1 March
    let old = plan_event(
        &before_start(),
        &event("2026-04-02T10:00:00+02:00"),
        t("2026-03-01T00:00:00Z"),
    )
    .expect("plan");
    // and, on 27 March, -14d and -7d have fired: only -1d is pending
    let now = t("2026-03-27T00:00:00Z");
    let pending: Vec<PlannedRun> = old.into_iter().filter(|r| r.fire_at > now).collect();
    // When the event moves a week later, to 9 April
    let new = plan_event(&before_start(), &event("2026-04-09T10:00:00+02:00"), now).expect("plan");
    let r = replan(&pending, new);
    // Then the old -1d is cancelled, -7d and the moved -1d are added, and -14d (now 26 March,
    // past) is not re-added
    assert_eq!(r.cancel, vec!["evt-1/starts_at-1d".to_owned()]);
    assert!(r.keep.is_empty());
    assert_eq!(
        plan_of(&r.add),
        vec![
            ("evt-1/starts_at-7d".into(), t("2026-04-02T07:00:00Z")),
            ("evt-1/starts_at-1d".into(), t("2026-04-08T07:00:00Z")),
        ]
    );
}

#[test]
fn replanning_unchanged_dates_keeps_everything() {
    let now = t("2026-03-01T00:00:00Z");
    let ev = event("2026-04-02T10:00:00+02:00");
    let old = plan_event(&before_start(), &ev, now).expect("plan");
    let r = replan(&old, plan_event(&before_start(), &ev, now).expect("plan"));
    assert!(r.cancel.is_empty());
    assert!(r.add.is_empty());
    assert_eq!(r.keep, old);
}

fn nurture(trigger: Trigger) -> Schedule {
    Schedule {
        id: "nurture.0".into(),
        workflow_id: "nurture".into(),
        trigger,
        paused: false,
        last_fired: None,
        next_due: None,
    }
}

fn entries(schedule: &Schedule, runs: Vec<PlannedRun>) -> Vec<PlannedEntry> {
    runs.into_iter()
        .map(|run| PlannedEntry {
            schedule_id: schedule.id.clone(),
            workflow_id: schedule.workflow_id.clone(),
            record: "berlin".into(),
            run,
        })
        .collect()
}

#[test]
fn a_records_plan_moves_with_its_dates_and_goes_when_it_is_deleted_or_unreadable() {
    // Given the reminders planned on 1 March for a record starting 2 April
    let schedule = nurture(before_start());
    let planned = plan_event(
        &before_start(),
        &event("2026-04-02T10:00:00+02:00"),
        t("2026-03-01T00:00:00Z"),
    )
    .expect("plan");
    let old = entries(&schedule, planned);
    // When, on 27 March (-14d and -7d are due), the record moves to 9 April
    let now = t("2026-03-27T00:00:00Z");
    let moved = event("2026-04-09T10:00:00+02:00");
    let plan = plan_record(&schedule, "berlin", Some(&moved), &old, now);
    // Then the pending -1d is cancelled and the new -7d and -1d are added for the same record,
    // and what is already due is left alone
    assert_eq!(plan.cancel, vec!["evt-1/starts_at-1d".to_owned()]);
    let added: Vec<(&str, &str, &str, Timestamp)> = plan
        .add
        .iter()
        .map(|e| {
            (
                e.schedule_id.as_str(),
                e.workflow_id.as_str(),
                e.record.as_str(),
                e.run.fire_at,
            )
        })
        .collect();
    assert_eq!(
        added,
        vec![
            ("nurture.0", "nurture", "berlin", t("2026-04-02T07:00:00Z")),
            ("nurture.0", "nurture", "berlin", t("2026-04-08T07:00:00Z")),
        ]
    );
    assert_eq!(plan.problem, None);
    // When the record is deleted, its pending run goes and nothing is added
    let gone = plan_record(&schedule, "berlin", None, &old, now);
    assert_eq!((gone.cancel.len(), gone.add.len()), (1, 0));
    // When its date cannot be read, the same, and the problem names the field
    let broken = json!({"id": "evt-1", "starts_at": "soon"});
    let bad = plan_record(&schedule, "berlin", Some(&broken), &old, now);
    assert_eq!((bad.cancel.len(), bad.add.len()), (1, 0));
    let problem = bad.problem.map(|e| e.to_string()).unwrap_or_default();
    assert!(problem.contains("starts_at"), "{problem}");
    // When nothing changed, there is nothing to do
    let same = plan_record(
        &schedule,
        "berlin",
        Some(&event("2026-04-02T10:00:00+02:00")),
        &old,
        now,
    );
    assert!(same.is_empty());
}

// ---- Errors -------------------------------------------------------------------------------

#[test]
fn errors_name_the_field() {
    let now = t("2026-03-01T00:00:00Z");
    let cron = |expr: &str, zone: &str| {
        next_fire(
            &trigger(json!({"type": "cron", "expression": expr, "time_zone": zone})),
            now,
        )
        .expect_err("must fail")
        .to_string()
    };
    let plan = |ev: Value, tr: Trigger| {
        plan_event(&tr, &ev, now)
            .expect_err("must fail")
            .to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (cron("0 25 * * *", "UTC"), "expression: `0 25 * * *`"),
        (
            cron("0 9 * * *", "Europe/Berlinn"),
            "time_zone: `Europe/Berlinn`",
        ),
        (
            next_fire(&trigger(json!({"type": "rate", "every": "0s"})), now)
                .expect_err("zero")
                .to_string(),
            "every:",
        ),
        (
            plan(json!({"id": "e", "time_zone": "UTC"}), before_start()),
            "no `starts_at`",
        ),
        (
            plan(json!({"id": "e", "starts_at": "next week"}), before_start()),
            "starts_at: `next week`",
        ),
        (
            plan(
                json!({"id": "e", "starts_at": "2026-04-02", "time_zone": "Mars/Olympus"}),
                before_start(),
            ),
            "time_zone: `Mars/Olympus`",
        ),
        (
            plan(json!({"starts_at": "2026-04-02"}), before_start()),
            "no `id`",
        ),
        (
            plan(
                json!({"id": "e", "starts_at": "2026-04-02"}),
                trigger(json!({"type": "event_relative", "field": "starts_at",
                               "offsets": ["-1d"], "at": "9am"})),
            ),
            "at: `9am`",
        ),
        (
            plan(
                json!({"id": "e", "starts_at": "2026-04-02"}),
                berlin_daily_nine(),
            ),
            "cron trigger",
        ),
    ];
    for (message, expected) in cases {
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[test]
fn an_event_relative_run_gets_its_input_from_the_event_record() {
    // Given an event record with attendees
    let record = json!({"id": "evt-1", "name": "Rust Berlin", "page_url": "https://x.example/e",
                        "attendees": [{"email": "a@x.example", "name": "A"}]});
    let now = t("2026-03-19T08:00:00Z");
    // When the trigger has an input template, then it is evaluated over `event`
    let templated = trigger(json!({"type": "event_relative", "field": "starts_at",
        "offsets": ["-1d"], "input": {
            "event": "${event}",
            "people": "${event.attendees.map(a, a.email)}",
            "survey": {"url": "${event.page_url + '/survey'}"}}}));
    let input = schedule::event_input(&templated, &record, now).expect("input");
    assert_eq!(input["event"], record);
    assert_eq!(input["people"], json!(["a@x.example"]));
    assert_eq!(input["survey"]["url"], "https://x.example/e/survey");
    // And without one, the record's fields with the record under `event`
    let input = schedule::event_input(&before_start(), &record, now).expect("input");
    assert_eq!(input["name"], "Rust Berlin");
    assert_eq!(input["event"]["id"], "evt-1");
    // And a template that fails on this record says where
    let failing = trigger(json!({"type": "event_relative", "field": "starts_at",
        "offsets": ["-1d"], "input": {"n": "${event.missing.deeper}"}}));
    let e = schedule::event_input(&failing, &record, now).expect_err("fails");
    assert!(e.to_string().starts_with("input"), "{e}");
}
