//! Schedules on AWS, against the emulators: the scheduler's `tick` fires cron and event-relative
//! schedules kept in the table, and the runs it starts are carried to completion through the
//! real queues by the real handlers (an event-source emulator polls them the way Lambda's event
//! source mapping does). The clock is the test's: the tick runs "at" the instants it is set to.

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

// Not every helper of `support` is used here (dead-letter counts, poll statistics).
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventflow_api::plane::{ControlPlane, Runs};
use eventflow_aws::dynamo::DynamoStore;
use eventflow_aws::handlers::{self, Worker};
use eventflow_aws::host::Host;
use eventflow_aws::lambda;
use eventflow_aws::messages::Family;
use eventflow_aws::plane::{AwsPlane, AwsTenants};
use eventflow_aws::ses::SesSettings;
use eventflow_engine::{Definition, RunStatus};
use eventflow_ports::{Clock, ExecutionStore, RecordStore, VersionStore};
use serde_json::{Value, json};
use support::env::{SENDER, TestEnv, test_env};

type Timestamp = DateTime<Utc>;

const TENANT: &str = "acme";

fn t(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// A clock the test sets.
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

/// The handlers of one deployment on one test's resources, and the tenant's API plane.
struct Bundle {
    env: TestEnv,
    host: Host<DynamoStore>,
    plane: AwsPlane<DynamoStore>,
    workers: HashMap<&'static str, Worker<DynamoStore>>,
    clock: Arc<TestClock>,
}

async fn bundle(now: &str) -> Bundle {
    let env = test_env(5).await;
    let clock = Arc::new(TestClock(Mutex::new(t(now))));
    let root = lambda::host_with(
        env.dynamo(),
        env.sqs(),
        &env.table,
        env.urls.clone(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let host = root.for_tenant(TENANT);
    let plane = AwsTenants::new(root).aws_plane(TENANT);
    let ses = SesSettings {
        sender: SENDER.into(),
        notify_domain: "ops.eventflow.example".into(),
    };
    let mut workers = HashMap::new();
    for f in Family::ALL {
        let w = lambda::worker(&env.config, host.clone(), f, ses.clone()).expect("worker");
        workers.insert(f.name(), w);
    }
    Bundle {
        env,
        host,
        plane,
        workers,
        clock,
    }
}

impl Bundle {
    fn set(&self, at: &str) {
        *self.clock.0.lock().expect("clock") = t(at);
    }

    /// Publishes a definition (its first version is active) and tells the plane, as the API
    /// does after a publish: the schedules are synced.
    async fn publish(&self, def: Value) {
        let def: Definition = serde_json::from_value(def).expect("definition");
        self.host
            .store()
            .publish(&def, &format!("hash-{}", def.name), self.host.now())
            .await
            .expect("publish");
        Runs::changed(&*self.plane).await;
    }

    /// The scheduler's tick at `at`: the runs its schedules started.
    async fn tick(&self, at: &str) -> usize {
        self.set(at);
        handlers::tick(&self.host).await.expect("tick").schedules
    }

    async fn schedule(&self, id: &str) -> Value {
        Runs::schedules(&*self.plane)
            .await
            .expect("schedules")
            .into_iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no schedule {id}"))
    }

    /// The planned runs of schedule `id`: (key, instant).
    async fn planned(&self, id: &str) -> Vec<(String, Timestamp)> {
        let view = self.schedule(id).await;
        view["planned"]
            .as_array()
            .expect("planned")
            .iter()
            .map(|p| {
                (
                    p["key"].as_str().expect("key").to_owned(),
                    t(p["fire_at"].as_str().expect("fire_at")),
                )
            })
            .collect()
    }

    async fn run_for(&self, key: &str) -> Option<String> {
        self.host
            .store()
            .execution_for_key(key)
            .await
            .expect("start key")
    }

    /// One round of every event source: the coordinator's queue, then each task queue.
    async fn round(&self) -> usize {
        let mut seen = 0;
        let coordinator = self.env.source(&self.env.urls.coordinator, 5);
        seen += coordinator
            .poll(async |batch| handlers::coordinate(&self.host, batch).await)
            .await;
        for f in Family::ALL {
            let worker = &self.workers[f.name()];
            let source = self.env.source(&self.env.urls.tasks[f.name()], 5);
            seen += source
                .poll(async |batch| handlers::work(worker, batch).await)
                .await;
        }
        seen
    }

    /// Drives the queues until the run ends (at most 60 s).
    async fn until_finished(&self, id: &str) -> RunStatus {
        for _ in 0..600 {
            let cp = self.host.store().checkpoint(id).await.expect("read");
            if let Some(cp) = cp
                && cp.status.is_terminal()
            {
                return cp.status;
            }
            if self.round().await == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("run {id} did not finish")
    }
}

/// A workflow with one trigger whose run writes a record through the records worker.
fn scheduled(id: &str, trigger: Value, record: Value) -> Value {
    json!({
        "id": id, "name": id, "kind": "attendee_nurture",
        "triggers": [trigger],
        "steps": [
            {"id": "write", "action": "records.put", "input": record}
        ]
    })
}

#[tokio::test]
async fn a_daily_berlin_cron_fires_once_a_slot_across_the_daylight_saving_change() {
    // Given a nurture every day at 09:00 Berlin, published on the 27th of March.
    let b = bundle("2026-03-27T12:00:00Z").await;
    b.publish(scheduled(
        "daily",
        json!({"type": "cron", "expression": "0 9 * * *", "time_zone": "Europe/Berlin",
               "input": {"batch": "morning"}}),
        json!({"collection": "pings", "key": "daily", "record": {"batch": "${input.batch}"}}),
    ))
    .await;
    // The schedule is in the `due` index under its own shards: the timer sweep does not see it.
    let later = t("2026-04-30T00:00:00Z");
    let store = b.host.store();
    let due = store
        .due_schedules_of_all_tenants(later, 100)
        .await
        .expect("due");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].0, TENANT);
    let timers = store
        .due_timers_of_all_tenants(later, 100)
        .await
        .expect("timers");
    assert!(timers.is_empty(), "{timers:?}");
    let view = b.schedule("daily.0").await;
    assert_eq!(view["kind"], "cron", "{view:#}");
    assert_eq!(
        view["next_due"],
        json!(t("2026-03-28T08:00:00Z")),
        "{view:#}"
    );

    // Then nothing fires a minute early, and at 09:00 Berlin (08:00Z, winter time) one run
    // starts, however often the tick runs.
    assert_eq!(b.tick("2026-03-28T07:59:00Z").await, 0);
    assert_eq!(b.tick("2026-03-28T08:00:00Z").await, 1);
    assert_eq!(b.tick("2026-03-28T08:00:00Z").await, 0);
    assert_eq!(b.tick("2026-03-28T08:00:30Z").await, 0);
    let first = b
        .run_for("schedule/daily.0@2026-03-28T08:00:00.000Z")
        .await
        .expect("the 28th's run");
    assert_eq!(b.until_finished(&first).await, RunStatus::Completed);
    let ping = b.host.store().get("pings", "daily").await.expect("get");
    assert_eq!(ping, Some(json!({"batch": "morning"})));

    // When the clocks have gone forward (at 02:00 on the 29th), then 09:00 Berlin is 07:00Z:
    // the 29th's and the 30th's runs start then, once each.
    assert_eq!(b.tick("2026-03-29T06:59:00Z").await, 0);
    assert_eq!(b.tick("2026-03-29T07:00:00Z").await, 1);
    assert!(
        b.run_for("schedule/daily.0@2026-03-29T07:00:00.000Z")
            .await
            .is_some()
    );
    assert_eq!(b.tick("2026-03-30T06:59:00Z").await, 0);
    assert_eq!(b.tick("2026-03-30T07:00:00Z").await, 1);
    assert_eq!(b.tick("2026-03-30T07:00:00Z").await, 0);
    let second = b
        .run_for("schedule/daily.0@2026-03-30T07:00:00.000Z")
        .await
        .expect("the 30th's run");
    assert_ne!(first, second);
    assert!(
        b.run_for("schedule/daily.0@2026-03-30T08:00:00.000Z")
            .await
            .is_none(),
        "winter time is not kept after the change"
    );
    assert_eq!(b.until_finished(&second).await, RunStatus::Completed);
    let view = b.schedule("daily.0").await;
    assert_eq!(
        view["last_fired"],
        json!(t("2026-03-30T07:00:00Z")),
        "{view:#}"
    );
    assert_eq!(
        view["next_due"],
        json!(t("2026-03-31T07:00:00Z")),
        "{view:#}"
    );
}

#[tokio::test]
async fn a_missed_day_is_caught_up_once_for_the_latest_slot() {
    let b = bundle("2026-03-27T12:00:00Z").await;
    b.publish(scheduled(
        "daily",
        json!({"type": "cron", "expression": "0 9 * * *", "time_zone": "Europe/Berlin"}),
        json!({"collection": "pings", "key": "daily", "record": {}}),
    ))
    .await;
    // No tick from the 27th to the 30th after 09:00 Berlin: one run, for the 30th.
    assert_eq!(b.tick("2026-03-30T07:30:00Z").await, 1);
    assert_eq!(b.tick("2026-03-30T07:31:00Z").await, 0);
    assert!(
        b.run_for("schedule/daily.0@2026-03-30T07:00:00.000Z")
            .await
            .is_some()
    );
    for missed in ["2026-03-28T08:00:00.000Z", "2026-03-29T07:00:00.000Z"] {
        assert!(
            b.run_for(&format!("schedule/daily.0@{missed}"))
                .await
                .is_none()
        );
    }
}

fn nurture() -> Value {
    json!({
        "id": "nurture", "name": "nurture", "kind": "attendee_nurture",
        "input_schema": {"type": "object", "required": ["event_id", "starts_at"]},
        "triggers": [{"type": "event_relative", "field": "starts_at",
                      "offsets": ["-14d", "-7d", "-1d"], "at": "09:00",
                      "input": {"event_id": "${event.id}", "name": "${event.name}",
                                "starts_at": "${event.starts_at}"}}],
        "steps": [
            {"id": "remember", "action": "records.put",
             "input": {"collection": "reminded", "key": "${input.event_id}",
                       "record": {"name": "${input.name}", "starts_at": "${input.starts_at}"}}}
        ]
    })
}

#[tokio::test]
async fn an_event_record_plans_its_reminders_and_a_moved_date_re_plans_them() {
    let b = bundle("2026-05-01T00:00:00Z").await;
    b.publish(nurture()).await;
    let event = json!({"id": "evt-1", "name": "Summit", "time_zone": "Europe/Berlin",
                       "starts_at": "2026-06-20T09:00:00+02:00"});

    // When the event record is written through the API, then 14, 7 and 1 days before its
    // start are planned at 09:00 Berlin (07:00Z).
    b.plane
        .put_record("events", "evt-1", event.clone())
        .await
        .expect("put");
    assert_eq!(
        b.planned("nurture.0").await,
        [
            ("evt-1/starts_at-14d".to_owned(), t("2026-06-06T07:00:00Z")),
            ("evt-1/starts_at-7d".to_owned(), t("2026-06-13T07:00:00Z")),
            ("evt-1/starts_at-1d".to_owned(), t("2026-06-19T07:00:00Z")),
        ]
    );
    let view = b.schedule("nurture.0").await;
    assert_eq!(view["kind"], "event_relative", "{view:#}");
    assert_eq!(
        view["next_due"],
        json!(t("2026-06-06T07:00:00Z")),
        "{view:#}"
    );

    // When the event moves a week later, then its plan moves with it.
    let mut moved = event.clone();
    moved["starts_at"] = json!("2026-06-27T09:00:00+02:00");
    b.plane
        .put_record("events", "evt-1", moved)
        .await
        .expect("put");
    assert_eq!(
        b.planned("nurture.0").await,
        [
            ("evt-1/starts_at-14d".to_owned(), t("2026-06-13T07:00:00Z")),
            ("evt-1/starts_at-7d".to_owned(), t("2026-06-20T07:00:00Z")),
            ("evt-1/starts_at-1d".to_owned(), t("2026-06-26T07:00:00Z")),
        ]
    );

    // Then the old first instant starts nothing, and the new one starts one nurture run on
    // the record, carried through the queues to completion.
    assert_eq!(b.tick("2026-06-06T07:00:00Z").await, 0);
    assert_eq!(b.tick("2026-06-13T06:59:00Z").await, 0);
    assert_eq!(b.tick("2026-06-13T07:00:00Z").await, 1);
    assert_eq!(b.tick("2026-06-13T07:00:00Z").await, 0);
    let id = b
        .run_for("schedule/nurture.0/evt-1/starts_at-14d@2026-06-13T07:00:00.000Z")
        .await
        .expect("the reminder's run");
    assert_eq!(b.until_finished(&id).await, RunStatus::Completed);
    let cp = b.host.store().checkpoint(&id).await.expect("read");
    assert_eq!(
        cp.map(|cp| cp.input),
        Some(json!({"event_id": "evt-1", "name": "Summit",
                    "starts_at": "2026-06-27T09:00:00+02:00"}))
    );
    let reminded = b.host.store().get("reminded", "evt-1").await.expect("get");
    assert_eq!(
        reminded,
        Some(json!({"name": "Summit", "starts_at": "2026-06-27T09:00:00+02:00"}))
    );
    assert_eq!(b.planned("nurture.0").await.len(), 2);

    // When a run (not the API) moves the event again, the next reminder that comes due finds
    // the record moved: it starts nothing and re-plans the event instead.
    let mut again = event.clone();
    again["starts_at"] = json!("2026-07-04T09:00:00+02:00");
    b.host
        .store()
        .put("events", "evt-1", &again)
        .await
        .expect("put");
    assert_eq!(b.tick("2026-06-20T07:00:00Z").await, 0);
    assert_eq!(
        b.planned("nurture.0").await,
        [
            ("evt-1/starts_at-7d".to_owned(), t("2026-06-27T07:00:00Z")),
            ("evt-1/starts_at-1d".to_owned(), t("2026-07-03T07:00:00Z")),
        ]
    );

    // When the event is deleted through the API, then its remaining reminders go.
    b.plane
        .delete_record("events", "evt-1")
        .await
        .expect("delete");
    assert!(b.planned("nurture.0").await.is_empty());
    assert_eq!(b.tick("2026-06-27T07:00:00Z").await, 0);
}

#[tokio::test]
async fn a_paused_schedule_fires_nothing_and_resuming_skips_the_missed_slots() {
    let b = bundle("2026-04-01T10:00:00Z").await;
    b.publish(scheduled(
        "morning",
        json!({"type": "cron", "expression": "0 9 * * *"}),
        json!({"collection": "pings", "key": "morning", "record": {}}),
    ))
    .await;
    let paused = Runs::pause_schedule(&*b.plane, "morning.0")
        .await
        .expect("pause");
    assert_eq!(paused["paused"], true, "{paused:#}");
    // A paused schedule is out of the due index: the tick does not even read it.
    assert!(
        b.host
            .store()
            .due_schedules_of_all_tenants(t("2026-04-30T00:00:00Z"), 100)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(b.tick("2026-04-02T09:00:00Z").await, 0);
    assert_eq!(b.tick("2026-04-03T09:00:00Z").await, 0);

    // Resumed after the 3rd's slot: the 2nd's and the 3rd's are dropped, the 4th's fires.
    b.set("2026-04-03T10:00:00Z");
    let resumed = Runs::resume_schedule(&*b.plane, "morning.0")
        .await
        .expect("resume");
    assert_eq!(resumed["paused"], false, "{resumed:#}");
    assert_eq!(
        resumed["next_due"],
        json!(t("2026-04-04T09:00:00Z")),
        "{resumed:#}"
    );
    assert_eq!(b.tick("2026-04-03T10:00:00Z").await, 0);
    assert_eq!(b.tick("2026-04-04T09:00:00Z").await, 1);
    let id = b
        .run_for("schedule/morning.0@2026-04-04T09:00:00.000Z")
        .await
        .expect("the 4th's run");
    assert_eq!(b.until_finished(&id).await, RunStatus::Completed);
    for missed in ["2026-04-02T09:00:00.000Z", "2026-04-03T09:00:00.000Z"] {
        assert!(
            b.run_for(&format!("schedule/morning.0@{missed}"))
                .await
                .is_none()
        );
    }

    // An unknown schedule is refused as not found.
    let err = Runs::pause_schedule(&*b.plane, "morning.9")
        .await
        .expect_err("unknown");
    assert!(err.to_string().contains("morning.9"), "{err}");
}

#[tokio::test]
async fn a_schedule_follows_the_active_version() {
    let b = bundle("2026-04-01T10:00:00Z").await;
    b.publish(scheduled(
        "morning",
        json!({"type": "cron", "expression": "0 9 * * *"}),
        json!({"collection": "pings", "key": "morning", "record": {}}),
    ))
    .await;
    Runs::pause_schedule(&*b.plane, "morning.0")
        .await
        .expect("pause");
    // Publishing again with the same trigger keeps its state (still paused).
    let mut same = scheduled(
        "morning",
        json!({"type": "cron", "expression": "0 9 * * *"}),
        json!({"collection": "pings", "key": "morning", "record": {"v": 2}}),
    );
    same["name"] = json!("morning-2");
    b.publish(same).await;
    assert_eq!(b.schedule("morning.0").await["paused"], true);
    // A version without triggers removes it.
    let mut none = scheduled(
        "morning",
        json!({"type": "webhook", "name": "morning"}),
        json!({"collection": "pings", "key": "morning", "record": {}}),
    );
    none["name"] = json!("morning-3");
    b.publish(none).await;
    let all = Runs::schedules(&*b.plane).await.expect("schedules");
    assert!(all.is_empty(), "{all:#?}");
}
