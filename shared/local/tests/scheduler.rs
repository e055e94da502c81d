//! The scheduler on a real store and runtime, with a virtual clock: cron across a
//! daylight-saving change, event-relative runs re-planned when an event moves, pause and
//! resume, exactly-once ticks, schedules following the active version, and the loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventflow_engine::{Definition, Timestamp};
use eventflow_local::LocalStore;
use eventflow_local::outbox::FileOutbox;
use eventflow_local::runtime::{Runtime, RuntimeConfig};
use eventflow_local::scheduler::{ScheduleKind, Scheduler, SchedulerError, TickReport};
use eventflow_ports::{Clock, ExecutionStore, ExecutionSummary, RecordStore, Workflows};
use serde_json::{Value, json};

fn t(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// A clock the test moves by hand.
struct VirtualClock(Mutex<Timestamp>);

impl VirtualClock {
    fn set(&self, at: &str) {
        *self.0.lock().expect("clock") = t(at);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

struct Host {
    _dir: tempfile::TempDir,
    clock: Arc<VirtualClock>,
    runtime: Runtime,
    scheduler: Scheduler,
}

impl Host {
    async fn start(now: &str) -> Host {
        let dir = tempfile::tempdir().expect("dir");
        let store = LocalStore::open(dir.path()).expect("open");
        let clock = Arc::new(VirtualClock(Mutex::new(t(now))));
        let runtime = Runtime::start(
            store,
            clock.clone(),
            eventflow_actions::registry(),
            HashMap::new(),
            Arc::new(FileOutbox::new(dir.path().join("outbox"))),
            RuntimeConfig::default(),
        )
        .await
        .expect("runtime");
        let scheduler = Scheduler::new(runtime.clone(), clock.clone());
        Host {
            _dir: dir,
            clock,
            runtime,
            scheduler,
        }
    }

    /// Publishes a workflow whose runs wait (so they stay visible) with these triggers.
    async fn publish(&self, id: &str, triggers: Value) {
        let def: Definition = serde_json::from_value(json!({
            "id": id, "name": id, "kind": "custom", "triggers": triggers,
            "steps": [{"id": "hold", "wait": {"duration": "300d"}}]
        }))
        .expect("definition");
        self.runtime.publish(&def).await.expect("publish");
        let report = self.scheduler.sync().await.expect("sync");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    /// Moves the clock to `at` and ticks there.
    async fn tick(&self, at: &str) -> TickReport {
        self.clock.set(at);
        let report = self.scheduler.tick(t(at)).await.expect("tick");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        report
    }

    async fn runs(&self, workflow: &str) -> Vec<ExecutionSummary> {
        self.runtime
            .store()
            .list(None, Some(workflow))
            .await
            .expect("list")
    }

    async fn input_of(&self, execution_id: &str) -> Value {
        self.runtime
            .store()
            .checkpoint(execution_id)
            .await
            .expect("checkpoint")
            .expect("the run exists")
            .input
    }

    async fn planned(&self, schedule_id: &str) -> Vec<(String, Timestamp)> {
        let all = self.scheduler.list().await.expect("list");
        let s = all
            .iter()
            .find(|s| s.id == schedule_id)
            .expect("the schedule is listed");
        s.planned
            .iter()
            .map(|p| (p.key.clone(), p.fire_at))
            .collect()
    }

    async fn put_event(&self, key: &str, record: Value) {
        self.runtime
            .store()
            .put("events", key, &record)
            .await
            .expect("put");
        let report = self
            .scheduler
            .event_changed(key, Some(&record))
            .await
            .expect("re-plan");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}

fn slots(report: &TickReport) -> Vec<Timestamp> {
    report.started.iter().map(|s| s.slot).collect()
}

#[tokio::test]
async fn a_daily_berlin_cron_fires_at_nine_local_across_the_spring_change_once_a_day() {
    // Given nurture-daily at 09:00 Europe/Berlin, synced on Friday 2026-03-27.
    let host = Host::start("2026-03-27T12:00:00Z").await;
    host.publish(
        "nurture-daily",
        json!([{"type": "cron", "expression": "0 9 * * *", "time_zone": "Europe/Berlin",
                "input": {"audience": "all"}}]),
    )
    .await;
    let list = host.scheduler.list().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "nurture-daily.0");
    assert_eq!(list[0].kind, ScheduleKind::Cron);
    assert_eq!(list[0].next_due, Some(t("2026-03-28T08:00:00Z")));

    // When the clock reaches each day's slot (and a minute before it, and again later that
    // day), then only the slot itself starts a run: 08:00Z in winter, 07:00Z from Sunday.
    assert!(host.tick("2026-03-28T07:59:00Z").await.started.is_empty());
    let first = host.tick("2026-03-28T08:00:00Z").await;
    assert_eq!(slots(&first), [t("2026-03-28T08:00:00Z")]);
    assert!(host.tick("2026-03-28T08:00:00Z").await.started.is_empty());
    assert!(host.tick("2026-03-28T20:00:00Z").await.started.is_empty());
    assert!(host.tick("2026-03-29T06:59:00Z").await.started.is_empty());
    let sunday = host.tick("2026-03-29T07:00:00Z").await;
    assert_eq!(slots(&sunday), [t("2026-03-29T07:00:00Z")]);
    assert!(host.tick("2026-03-30T06:59:59Z").await.started.is_empty());
    let monday = host.tick("2026-03-30T07:00:00Z").await;
    assert_eq!(slots(&monday), [t("2026-03-30T07:00:00Z")]);
    assert!(host.tick("2026-03-30T07:30:00Z").await.started.is_empty());

    // Then the runtime holds exactly three runs, each with the trigger's input.
    let runs = host.runs("nurture-daily").await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    for run in &runs {
        assert_eq!(
            host.input_of(&run.execution_id).await,
            json!({"audience": "all"})
        );
    }
    let view = &host.scheduler.list().await.expect("list")[0];
    assert_eq!(view.last_fired, Some(t("2026-03-30T07:00:00Z")));
    assert_eq!(view.next_due, Some(t("2026-03-31T07:00:00Z")));
}

#[tokio::test]
async fn an_event_date_change_re_plans_its_reminders() {
    // Given reminders 14, 7 and 1 day before an event's start, at 09:00 in its zone.
    let host = Host::start("2026-05-01T00:00:00Z").await;
    host.publish(
        "nurture",
        json!([{"type": "event_relative", "field": "starts_at",
                "offsets": ["-14d", "-7d", "-1d"], "at": "09:00"}]),
    )
    .await;
    let event = json!({"id": "evt-1", "name": "Summit", "time_zone": "Europe/Berlin",
        "starts_at": "2026-06-20T09:00:00+02:00", "organizer": {"name": "Ada"}});

    // When the event record is put, then three runs are planned at 09:00 Berlin (07:00Z).
    host.put_event("evt-1", event.clone()).await;
    assert_eq!(
        host.planned("nurture.0").await,
        [
            ("evt-1/starts_at-14d".to_owned(), t("2026-06-06T07:00:00Z")),
            ("evt-1/starts_at-7d".to_owned(), t("2026-06-13T07:00:00Z")),
            ("evt-1/starts_at-1d".to_owned(), t("2026-06-19T07:00:00Z")),
        ]
    );

    // When the event moves a week later, then the plan moves with it.
    let mut moved = event.clone();
    moved["starts_at"] = json!("2026-06-27T09:00:00+02:00");
    host.put_event("evt-1", moved).await;
    assert_eq!(
        host.planned("nurture.0").await,
        [
            ("evt-1/starts_at-14d".to_owned(), t("2026-06-13T07:00:00Z")),
            ("evt-1/starts_at-7d".to_owned(), t("2026-06-20T07:00:00Z")),
            ("evt-1/starts_at-1d".to_owned(), t("2026-06-26T07:00:00Z")),
        ]
    );

    // Then the old first instant starts nothing, and the new one starts one run, on the
    // record as it is then (its fields, and the record under `event`).
    assert!(host.tick("2026-06-06T07:00:00Z").await.started.is_empty());
    assert!(host.runs("nurture").await.is_empty());
    let fired = host.tick("2026-06-13T07:00:00Z").await;
    assert_eq!(fired.started.len(), 1, "{fired:?}");
    assert_eq!(
        fired.started[0].planned.as_deref(),
        Some("evt-1/starts_at-14d")
    );
    let input = host.input_of(&fired.started[0].execution_id).await;
    assert_eq!(input["event"]["starts_at"], "2026-06-27T09:00:00+02:00");
    assert_eq!(input["event"]["id"], "evt-1");
    assert_eq!(input["organizer"]["name"], "Ada");
    assert!(host.tick("2026-06-13T07:00:00Z").await.started.is_empty());
    assert_eq!(host.runs("nurture").await.len(), 1);
    assert_eq!(host.planned("nurture.0").await.len(), 2);

    // When the event is deleted, then its remaining runs are cancelled.
    host.runtime
        .store()
        .delete("events", "evt-1")
        .await
        .expect("delete");
    host.scheduler
        .event_changed("evt-1", None)
        .await
        .expect("re-plan");
    assert!(host.planned("nurture.0").await.is_empty());
    assert!(host.tick("2026-06-26T07:00:00Z").await.started.is_empty());
    assert_eq!(host.runs("nurture").await.len(), 1);
}

#[tokio::test]
async fn a_paused_schedule_fires_nothing_and_resumes_without_catching_up() {
    // Given a daily 09:00 UTC schedule, paused.
    let host = Host::start("2026-01-01T00:00:00Z").await;
    host.publish(
        "daily",
        json!([{"type": "cron", "expression": "0 9 * * *"}]),
    )
    .await;
    let paused = host.scheduler.pause("daily.0").await.expect("pause");
    assert!(paused.paused);

    // When two slots pass, then nothing starts.
    assert!(host.tick("2026-01-01T09:00:00Z").await.started.is_empty());
    assert!(host.tick("2026-01-02T09:00:00Z").await.started.is_empty());

    // When it is resumed after them, then the missed slots are dropped, not caught up.
    host.clock.set("2026-01-03T10:00:00Z");
    let resumed = host.scheduler.resume("daily.0").await.expect("resume");
    assert!(!resumed.paused);
    assert_eq!(resumed.next_due, Some(t("2026-01-04T09:00:00Z")));
    assert!(host.tick("2026-01-03T10:00:00Z").await.started.is_empty());
    assert_eq!(
        slots(&host.tick("2026-01-04T09:00:00Z").await),
        [t("2026-01-04T09:00:00Z")]
    );
    assert_eq!(host.runs("daily").await.len(), 1);

    // And an unknown id is refused with a sentence that says how to find the right one.
    let err = host.scheduler.pause("daily.7").await.expect_err("unknown");
    assert!(
        matches!(err, SchedulerError::UnknownSchedule { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("`eventflow schedules` lists"),
        "{err}"
    );
    assert!(host.scheduler.resume("nope").await.is_err());
}

#[tokio::test]
async fn a_paused_event_schedule_drops_the_reminders_it_missed() {
    // Given planned reminders and a paused schedule.
    let host = Host::start("2026-05-01T00:00:00Z").await;
    host.publish(
        "nurture",
        json!([{"type": "event_relative", "field": "starts_at", "offsets": ["-7d", "-1d"]}]),
    )
    .await;
    host.put_event(
        "evt-2",
        json!({"id": "evt-2", "starts_at": "2026-06-20T00:00:00Z"}),
    )
    .await;
    host.scheduler.pause("nurture.0").await.expect("pause");

    // When the first reminder's instant passes, then nothing starts; after resuming, the
    // missed reminder is gone and the next one fires.
    assert!(host.tick("2026-06-13T00:00:00Z").await.started.is_empty());
    host.clock.set("2026-06-14T00:00:00Z");
    let resumed = host.scheduler.resume("nurture.0").await.expect("resume");
    assert_eq!(resumed.planned.len(), 1);
    assert!(host.tick("2026-06-14T00:00:00Z").await.started.is_empty());
    assert_eq!(host.tick("2026-06-19T00:00:00Z").await.started.len(), 1);
    assert_eq!(host.runs("nurture").await.len(), 1);
}

#[tokio::test]
async fn a_slot_starts_one_run_however_often_it_is_ticked() {
    // Given a schedule every 10 minutes.
    let host = Host::start("2026-01-01T00:00:00Z").await;
    host.publish("often", json!([{"type": "rate", "every": "10m"}]))
        .await;

    // When the same instant is ticked twice in a row, and twice at once, then one run each.
    assert_eq!(host.tick("2026-01-01T00:10:00Z").await.started.len(), 1);
    assert!(host.tick("2026-01-01T00:10:00Z").await.started.is_empty());
    host.clock.set("2026-01-01T00:20:00Z");
    let at = t("2026-01-01T00:20:00Z");
    let (a, b) = tokio::join!(host.scheduler.tick(at), host.scheduler.tick(at));
    let started = a.expect("tick").started.len() + b.expect("tick").started.len();
    assert_eq!(started, 1);
    assert_eq!(host.runs("often").await.len(), 2);

    // When the host was down for an hour, then one run for the latest slot, the rest skipped.
    let late = host.tick("2026-01-01T01:25:00Z").await;
    assert_eq!(slots(&late), [t("2026-01-01T01:20:00Z")]);
    assert_eq!(late.started[0].skipped, 5);
    assert_eq!(host.runs("often").await.len(), 3);

    // When a process started the next slot's run and died before recording the firing, then
    // the tick finds that run by the slot's key instead of starting another.
    let earlier = Workflows::start(
        &host.runtime,
        "often",
        &json!({}),
        "schedule/often.0@2026-01-01T01:30:00.000Z",
    )
    .await
    .expect("start");
    let again = host.tick("2026-01-01T01:30:00Z").await;
    assert_eq!(again.started.len(), 1);
    assert_eq!(again.started[0].execution_id, earlier);
    assert_eq!(host.runs("often").await.len(), 4);
}

#[tokio::test]
async fn schedules_follow_the_active_version() {
    // Given version 1 with a cron and an event-relative trigger, the cron paused, and an
    // event planned.
    let host = Host::start("2026-05-01T00:00:00Z").await;
    let cron = json!({"type": "cron", "expression": "0 9 * * *"});
    let relative = json!({"type": "event_relative", "field": "ends_at", "offsets": ["+1d"]});
    host.publish("w", json!([cron.clone(), relative.clone()]))
        .await;
    host.scheduler.pause("w.0").await.expect("pause");
    host.put_event(
        "evt-3",
        json!({"id": "evt-3", "ends_at": "2026-06-01T18:00:00Z"}),
    )
    .await;
    assert_eq!(host.planned("w.1").await.len(), 1);

    // When version 2 keeps the cron and adds a rate, then the cron keeps its pause.
    let rate = json!({"type": "rate", "every": "1h"});
    host.publish("w", json!([cron.clone(), rate, relative.clone()]))
        .await;
    let list = host.scheduler.list().await.expect("list");
    let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["w.0", "w.1", "w.2"]);
    assert!(list[0].paused);
    assert_eq!(list[1].kind, ScheduleKind::Rate);
    assert_eq!(list[2].planned.len(), 1);

    // When version 3 drops every trigger, then the schedules and planned runs are gone, and
    // nothing fires at their instants.
    host.publish("w", json!([])).await;
    assert!(host.scheduler.list().await.expect("list").is_empty());
    assert!(host.tick("2026-06-02T18:00:00Z").await.started.is_empty());
    assert!(host.runs("w").await.is_empty());
}

#[tokio::test]
async fn the_loop_re_plans_written_events_and_stops_when_told() {
    // Given the scheduler's loop, running.
    let host = Host::start("2026-05-01T00:00:00Z").await;
    host.publish(
        "followup",
        json!([{"type": "event_relative", "field": "ends_at", "offsets": ["+1d"], "at": "10:00"}]),
    )
    .await;
    let handle = host.scheduler.clone().spawn();

    // When an event record is written to the store (as records.put does), then its run is
    // planned without anyone calling the scheduler.
    host.runtime
        .store()
        .put(
            "events",
            "evt-4",
            &json!({"id": "evt-4", "ends_at": "2026-06-01T18:00:00Z"}),
        )
        .await
        .expect("put");
    let mut planned = Vec::new();
    for _ in 0..200 {
        planned = host.planned("followup.0").await;
        if !planned.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        planned,
        [("evt-4/ends_at+1d".to_owned(), t("2026-06-02T10:00:00Z"))]
    );

    // When it is told to stop, then it ends.
    host.scheduler.stop();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the loop stops")
        .expect("the loop did not panic");
}
