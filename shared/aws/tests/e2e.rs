//! The serverless bundle end to end on the emulators: runs carried through the real SQS queues
//! by the real handlers (coordinator, one worker per family, the scheduler), with DynamoDB on
//! moto and SES on LocalStack. An event-source emulator polls the queues the way Lambda's
//! event source mapping does.

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventflow_aws::dynamo::DynamoStore;
use eventflow_aws::handlers::{self, Worker};
use eventflow_aws::host::Host;
use eventflow_aws::lambda;
use eventflow_aws::messages::{Family, TaskMessage};
use eventflow_aws::ses::SesSettings;
use eventflow_aws::sqs::QueueUrls;
use eventflow_engine::{Definition, RunStatus};
use eventflow_ports::{Clock, ExecutionStore, RecordStore, VersionStore};
use serde_json::{Value, json};
use support::env::{SENDER, TestEnv, test_env};

type Timestamp = DateTime<Utc>;

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

impl TestClock {
    fn advance(&self, by: chrono::TimeDelta) {
        let mut t = self.0.lock().expect("clock");
        *t += by;
    }
}

/// The handlers of one deployment, on one test's resources.
struct Bundle {
    env: TestEnv,
    host: Host<DynamoStore>,
    /// The same table through an unmetered client: what the test reads to check and wait
    /// is not what the bundle costs.
    observer: DynamoStore,
    workers: HashMap<&'static str, Worker<DynamoStore>>,
    clock: Arc<TestClock>,
}

async fn bundle(max_receives: u32) -> Bundle {
    let env = test_env(max_receives).await;
    let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
    let host = lambda::host_with(
        env.dynamo(),
        env.sqs(),
        &env.table,
        env.urls.clone(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .for_tenant("acme");
    let ses = SesSettings {
        sender: SENDER.into(),
        notify_domain: "ops.eventflow.example".into(),
    };
    let mut workers = HashMap::new();
    for f in Family::ALL {
        let w = lambda::worker(&env.config, host.clone(), f, ses.clone()).expect("worker");
        workers.insert(f.name(), w);
    }
    let observer = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&env.config),
        &env.table,
        "acme",
    );
    Bundle {
        env,
        host,
        observer,
        workers,
        clock,
    }
}

impl Bundle {
    async fn publish(&self, def: Value) -> Definition {
        let def: Definition = serde_json::from_value(def).expect("definition");
        self.host
            .store()
            .publish(&def, &format!("hash-{}", def.name), Utc::now())
            .await
            .expect("publish");
        def
    }

    /// One round of every event source: the coordinator's queue, then each task queue.
    /// `twice` hands each batch to its handler twice (a duplicate delivery).
    async fn round(&self, host: &Host<DynamoStore>, twice: bool) -> usize {
        let mut seen = 0;
        let coordinator = self.env.source(&self.env.urls.coordinator, 5);
        seen += coordinator
            .poll(async |batch| {
                if twice {
                    handlers::coordinate(host, batch.clone()).await;
                }
                handlers::coordinate(host, batch).await
            })
            .await;
        for f in Family::ALL {
            let worker = &self.workers[f.name()];
            let source = self.env.source(&self.env.urls.tasks[f.name()], 5);
            seen += source
                .poll(async |batch| {
                    if twice {
                        handlers::work(worker, batch.clone()).await;
                    }
                    handlers::work(worker, batch).await
                })
                .await;
        }
        seen
    }

    /// Drives the queues until the run ends (at most 60 s).
    async fn until_finished(&self, id: &str, twice: bool) -> RunStatus {
        for _ in 0..600 {
            let cp = self.observer.checkpoint(id).await.expect("read");
            if let Some(cp) = cp
                && cp.status.is_terminal()
            {
                return cp.status;
            }
            if self.round(&self.host, twice).await == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("run {id} did not finish")
    }

    /// The emails LocalStack's SES holds, sent from our sender.
    async fn emails(&self) -> Vec<Value> {
        let base = std::env::var("AWS_ENDPOINT_URL").expect("endpoint");
        let all: Value = reqwest::get(format!("{base}/_aws/ses?email={SENDER}"))
            .await
            .expect("ses")
            .json()
            .await
            .expect("json");
        all["messages"].as_array().cloned().unwrap_or_default()
    }
}

fn launch() -> Value {
    json!({
        "id": "launch", "name": "Launch", "kind": "event_launch", "on_failure": "rollback",
        "input_schema": {"type": "object", "required": ["event", "attendees"]},
        "steps": [
            {"id": "create_event", "action": "records.put", "compensate": true,
             "input": {"collection": "events", "key": "${input.event.id}",
                       "record": {"name": "${input.event.name}"}}},
            {"id": "welcome", "action": "email.send", "depends_on": ["create_event"],
             "for_each": {"items": "input.attendees", "concurrency": 10},
             "input": {"from": SENDER, "to": "${item}",
                       "subject": "${'Welcome to ' + input.event.name + ' ' + string(index)}",
                       "text": "See you there."},
             "compensate": {"action": "email.send",
                            "input": {"from": SENDER, "to": "${item}",
                                      "subject": "${'Correction: ' + input.event.name}",
                                      "text": "Sorry, not yet."}}},
            {"id": "tell_team", "action": "notify", "depends_on": ["welcome"],
             "input": {"channel": "ops", "text": "${'launched ' + input.event.name}"}},
            {"id": "maybe_fail", "action": "fail", "depends_on": ["tell_team"],
             "input": {"times": "${input.fail ? 9 : 0}", "message": "the venue cancelled"}}
        ]
    })
}

fn input(name: &str, fail: bool) -> Value {
    json!({"event": {"id": name, "name": name},
           "attendees": ["a@example.org", "b@example.org", "c@example.org"],
           "fail": fail})
}

#[tokio::test]
async fn a_launch_runs_to_completion_through_the_queues_and_its_emails_are_in_ses() {
    let b = bundle(5).await;
    b.publish(launch()).await;
    let name = format!("rust-{}", uuid::Uuid::now_v7().simple());
    let (id, created) = b
        .host
        .start_workflow("launch", None, input(&name, false), "launch-1")
        .await
        .expect("start");
    assert!(created);
    assert_eq!(b.until_finished(&id, false).await, RunStatus::Completed);
    let record = b.observer.get("events", &name).await.expect("get");
    assert_eq!(record.map(|r| r["name"].clone()), Some(json!(name)));
    let mine: Vec<Value> = b
        .emails()
        .await
        .into_iter()
        .filter(|m| {
            m["Subject"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("Welcome to {name}")))
        })
        .collect();
    assert_eq!(mine.len(), 3, "one welcome per attendee: {mine:#?}");
    let team = b
        .emails()
        .await
        .into_iter()
        .filter(|m| m["Subject"] == format!("[info] launched {name}"))
        .count();
    assert_eq!(
        team, 1,
        "the notification went to the team channel's address"
    );
    // The same start key starts nothing new.
    let (again, created) = b
        .host
        .start_workflow("launch", None, input(&name, false), "launch-1")
        .await
        .expect("start");
    assert_eq!((again, created), (id, false));
}

#[tokio::test]
async fn a_failure_is_rolled_back_by_compensations_in_reverse_order() {
    let b = bundle(5).await;
    b.publish(launch()).await;
    let name = format!("doomed-{}", uuid::Uuid::now_v7().simple());
    let (id, _) = b
        .host
        .start_workflow("launch", None, input(&name, true), "launch-doomed")
        .await
        .expect("start");
    assert_eq!(b.until_finished(&id, false).await, RunStatus::Compensated);
    // The record is gone and every attendee got a correction after the welcome.
    assert_eq!(b.observer.get("events", &name).await.expect("get"), None);
    let history = b.observer.history(&id).await.expect("history");
    let order: Vec<String> = history
        .iter()
        .filter_map(|h| {
            let e = serde_json::to_value(&h.event).ok()?;
            (e["type"] == "compensation_succeeded")
                .then(|| e["step"].as_str().map(str::to_owned))?
        })
        .collect();
    let last_welcome = order
        .iter()
        .rposition(|s| s == "welcome")
        .expect("welcome undone");
    let event = order
        .iter()
        .position(|s| s == "create_event")
        .expect("event undone");
    assert!(
        last_welcome < event,
        "welcome is undone before the record: {order:?}"
    );
    let corrections = b
        .emails()
        .await
        .into_iter()
        .filter(|m| {
            m["Subject"]
                .as_str()
                .is_some_and(|s| s == format!("Correction: {name}"))
        })
        .count();
    assert_eq!(corrections, 3);
}

#[tokio::test]
async fn every_message_delivered_twice_gives_the_same_end_and_no_doubled_email() {
    let b = bundle(5).await;
    b.publish(launch()).await;
    let name = format!("twice-{}", uuid::Uuid::now_v7().simple());
    let (id, _) = b
        .host
        .start_workflow("launch", None, input(&name, false), "launch-twice")
        .await
        .expect("start");
    assert_eq!(b.until_finished(&id, true).await, RunStatus::Completed);
    let welcomes = b
        .emails()
        .await
        .into_iter()
        .filter(|m| {
            m["Subject"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("Welcome to {name}")))
        })
        .count();
    assert_eq!(welcomes, 3, "each email sent once");
    let history = b.observer.history(&id).await.expect("history");
    let seqs: Vec<u64> = history.iter().map(|h| h.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "one history entry per applied event");
    // And the run's figures are counted once.
    let now = b.clock.now();
    let hours = b
        .observer
        .metrics(
            "launch",
            now - chrono::TimeDelta::days(1),
            now + chrono::TimeDelta::hours(1),
        )
        .await
        .expect("metrics");
    let mut counts = std::collections::BTreeMap::new();
    for h in &hours {
        for (name, f) in &h.figures {
            *counts.entry(name.as_str()).or_insert(0) += f.count;
        }
    }
    assert_eq!(
        counts,
        [("RunCompleted", 1), ("RunDuration", 1), ("RunStarted", 1)].into(),
        "{hours:#?}"
    );
}

#[tokio::test]
async fn a_coordinator_that_dies_after_writing_and_before_sending_is_recovered_by_redelivery() {
    let b = bundle(5).await;
    b.publish(launch()).await;
    let name = format!("crash-{}", uuid::Uuid::now_v7().simple());
    let (id, _) = b
        .host
        .start_workflow("launch", None, input(&name, false), "launch-crash")
        .await
        .expect("start");
    // The first attempt's answer reaches a coordinator whose sends all fail (it "dies" after
    // the checkpoint is written): the message is reported failed and comes again.
    let records = &b.workers["records"];
    let source = b.env.source(&b.env.urls.tasks["records"], 5);
    assert_eq!(
        source
            .poll(async |e| handlers::work(records, e).await)
            .await,
        1
    );
    let broken = lambda::host_with(
        b.env.dynamo(),
        b.env.sqs(),
        &b.env.table,
        QueueUrls {
            coordinator: b.env.urls.coordinator.clone(),
            tasks: b
                .env
                .urls
                .tasks
                .keys()
                .map(|k| (*k, format!("{}-missing", b.env.urls.coordinator)))
                .collect(),
        },
        Arc::clone(&b.clock) as Arc<dyn Clock>,
    )
    .for_tenant("acme");
    let coordinator = b.env.source(&b.env.urls.coordinator, 1);
    let mut failures = 0;
    coordinator
        .poll(async |e| {
            let r = handlers::coordinate(&broken, e).await;
            failures = r.batch_item_failures.len();
            r
        })
        .await;
    assert_eq!(
        failures, 1,
        "the send failed, so the message is not acknowledged"
    );
    let cp = b
        .host
        .store()
        .checkpoint(&id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(
        cp.step("create_event").map(|s| s.status),
        Some(eventflow_engine::StepStatus::Succeeded),
        "the checkpoint was written before the crash"
    );
    // Redelivered to a healthy coordinator: the event is known, and what the run waits for
    // (the welcomes) is sent again; the run completes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.until_finished(&id, false).await, RunStatus::Completed);
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letter_queue() {
    let b = bundle(2).await;
    let sqs = aws_sdk_sqs::Client::new(&b.env.config);
    sqs.send_message()
        .queue_url(&b.env.urls.coordinator)
        .message_body("this is not an event")
        .message_group_id("acme#poison")
        .message_deduplication_id("poison-1")
        .send()
        .await
        .expect("send");
    let coordinator = b.env.source(&b.env.urls.coordinator, 1);
    for _ in 0..30 {
        coordinator
            .poll(async |e| handlers::coordinate(&b.host, e).await)
            .await;
        if b.env.dead_letters(&b.env.urls.coordinator).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // ApproximateNumberOfMessagesVisible > 0 on a dead-letter queue is what the template's
    // alarms watch.
    assert_eq!(b.env.dead_letters(&b.env.urls.coordinator).await, 1);
}

#[tokio::test]
async fn short_waits_ride_the_queue_delay_and_long_ones_the_scheduler() {
    let b = bundle(5).await;
    b.publish(json!({
        "id": "waits", "name": "Waits", "kind": "custom",
        "steps": [
            {"id": "short", "wait": {"duration": "2s"}},
            {"id": "long", "wait": {"duration": "3d"}, "depends_on": ["short"]},
            {"id": "done", "action": "records.put", "depends_on": ["long"],
             "input": {"collection": "done", "key": "x", "record": {"ok": true}}}
        ]
    }))
    .await;
    let (id, _) = b
        .host
        .start_workflow("waits", None, json!({}), "waits-1")
        .await
        .expect("start");
    // The 2 s wait comes back by itself through the flow queue's delay.
    let mut waiting_long = false;
    for _ in 0..100 {
        b.round(&b.host, false).await;
        let cp = b
            .host
            .store()
            .checkpoint(&id)
            .await
            .expect("read")
            .expect("run");
        if cp.step("long").map(|s| s.status) == Some(eventflow_engine::StepStatus::Waiting) {
            waiting_long = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(waiting_long, "the short wait ended by itself");
    // Three days later (on the clock), the scheduler finds the timer due.
    b.clock
        .advance(chrono::TimeDelta::days(3) + chrono::TimeDelta::minutes(1));
    let swept = handlers::tick(&b.host).await.expect("tick");
    assert!(swept.timers >= 1, "{swept:?}");
    assert_eq!(b.until_finished(&id, false).await, RunStatus::Completed);
}

/// On-demand prices (us-east-1, per million): DynamoDB write and read request units, SQS
/// requests (standard; FIFO is $0.50), Lambda requests, and Lambda compute for 256 MB arm64
/// at 25 ms a batch.
const PRICE_WRITE_UNIT: f64 = 0.625;
const PRICE_READ_UNIT: f64 = 0.125;
const PRICE_SQS_REQUEST: f64 = 0.50;
const PRICE_LAMBDA_REQUEST: f64 = 0.20;
const PRICE_LAMBDA_COMPUTE: f64 = 0.25 * 0.025 * 13.3334;

/// Steps (attempts answered: succeeded or failed) in a run's history.
async fn steps_of(b: &Bundle, id: &str) -> usize {
    let history = b.observer.history(id).await.expect("history");
    history
        .iter()
        .filter(|h| {
            serde_json::to_value(&h.event)
                .ok()
                .is_some_and(|e| e["type"] == "step_succeeded" || e["type"] == "step_failed")
        })
        .count()
}

/// Starts `inputs` runs of `workflow` at once, drives them to completion through the queues,
/// and prints what their steps cost; returns the cost per million steps.
async fn cost_of(b: &Bundle, label: &str, workflow: &str, inputs: Vec<Value>) -> f64 {
    let before = b.env.meter.bill();
    let kinds_before = b.env.meter.writes_by_kind();
    let reads_before = b.env.meter.reads_by_kind();
    let (_, _, invocations_before) = b.env.stats.get();
    let mut ids = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let key = format!("{label}-{i}-{}", uuid::Uuid::now_v7().simple());
        let (id, _) = b
            .host
            .start_workflow(workflow, None, input, &key)
            .await
            .expect("start");
        ids.push(id);
    }
    let mut steps = 0;
    for id in &ids {
        assert_eq!(b.until_finished(id, false).await, RunStatus::Completed);
        steps += steps_of(b, id).await;
    }
    let bill = b.env.meter.bill().since(&before);
    let invocations = b.env.stats.get().2 - invocations_before;
    let per = |x: f64| x / steps as f64;
    let cost = per(bill.write_units) * PRICE_WRITE_UNIT
        + per(bill.read_units) * PRICE_READ_UNIT
        + per(bill.sqs_requests as f64) * PRICE_SQS_REQUEST
        + per(invocations as f64) * (PRICE_LAMBDA_REQUEST + PRICE_LAMBDA_COMPUTE);
    eprintln!(
        "{label}: per step ({steps} steps in {} runs): DynamoDB {:.2} write units ({:.2} of them the indexes'), {:.2} read units, {:.2} calls; SQS {:.2} requests; Lambda {:.3} invocations; ${cost:.2} per million steps (Step Functions Standard: $25.00)",
        ids.len(),
        per(bill.write_units),
        per(bill.index_write_units),
        per(bill.read_units),
        per(bill.dynamo_calls as f64),
        per(bill.sqs_requests as f64),
        per(invocations as f64),
    );
    for (kind, units) in b.env.meter.writes_by_kind() {
        let units = units - kinds_before.get(&kind).copied().unwrap_or(0.0);
        if units > 0.0 {
            eprintln!("  {kind}: {:.2} write units per step", per(units));
        }
    }
    for (kind, units) in b.env.meter.reads_by_kind() {
        let units = units - reads_before.get(&kind).copied().unwrap_or(0.0);
        if units > 0.0 {
            eprintln!("  {kind}: {:.2} read units per step", per(units));
        }
    }
    assert!(
        bill.write_units > steps as f64 && bill.sqs_requests > 0,
        "every step writes and is carried by SQS: {bill:?}"
    );
    cost
}

#[tokio::test]
async fn what_a_step_costs_on_aws() {
    // A launch with 200 attendees: create the event, 200 welcomes, tell the team, a last
    // check (203 steps)
    let b = bundle(5).await;
    b.publish(launch()).await;
    let attendees: Vec<String> = (0..200).map(|i| format!("a{i}@example.org")).collect();
    let name = format!("cost-{}", uuid::Uuid::now_v7().simple());
    let input = json!({"event": {"id": name, "name": name}, "attendees": attendees, "fail": false});
    let fan_out = cost_of(&b, "launch, 200-attendee fan-out", "launch", vec![input]).await;
    // Twenty sponsor follow-ups at once, three steps one after the other each
    b.publish(json!({
        "id": "sponsor", "name": "Sponsor follow-up", "kind": "custom",
        "steps": [
            {"id": "log", "action": "records.put",
             "input": {"collection": "sponsors", "key": "${input.sponsor}", "record": {"stage": "contacted"}}},
            {"id": "mail", "action": "email.send", "depends_on": ["log"],
             "input": {"from": SENDER, "to": "${input.sponsor + '@example.org'}",
                       "subject": "Thank you", "text": "Thanks for sponsoring."}},
            {"id": "tell", "action": "notify", "depends_on": ["mail"],
             "input": {"channel": "sponsors", "text": "${input.sponsor + ' thanked'}"}}
        ]
    }))
    .await;
    let sponsors = (0..20)
        .map(|i| json!({"sponsor": format!("s{i}")}))
        .collect();
    let sequential = cost_of(
        &b,
        "sponsor follow-ups, 20 runs of 3 steps",
        "sponsor",
        sponsors,
    )
    .await;
    // The target: at most $2.50 a million steps, amortized over a fan-out
    assert!(fan_out <= 2.50, "${fan_out:.2} per million steps");
    assert!(
        sequential < 25.0,
        "${sequential:.2} per million steps is not below Step Functions' $25"
    );
}

#[tokio::test]
async fn a_run_stuck_without_progress_has_its_attempts_sent_again_by_the_scheduler() {
    let b = bundle(5).await;
    b.publish(launch()).await;
    let name = format!("lost-{}", uuid::Uuid::now_v7().simple());
    let (id, _) = b
        .host
        .start_workflow("launch", None, input(&name, false), "launch-lost")
        .await
        .expect("start");
    // The first attempt's message is lost (taken off the queue, never handled).
    let lost = b.env.source(&b.env.urls.tasks["records"], 5);
    assert_eq!(
        lost.poll(async |_| eventflow_aws::events::SqsBatchResponse::default())
            .await,
        1
    );
    // Before the deadline the scheduler leaves the run alone; after it, sends it again once.
    let early = handlers::tick(&b.host).await.expect("tick");
    assert_eq!(early.stuck, 0);
    // The deadline is 15 minutes after the last write, rounded up to 5.
    b.clock.advance(chrono::TimeDelta::minutes(21));
    let late = handlers::tick(&b.host).await.expect("tick");
    assert_eq!(late.stuck, 1, "{late:?}");
    let again = handlers::tick(&b.host).await.expect("tick");
    assert_eq!(
        again.stuck, 0,
        "the deadline moved on: not sent every minute"
    );
    assert_eq!(b.until_finished(&id, false).await, RunStatus::Completed);
}

#[tokio::test]
async fn an_attempt_too_large_for_a_message_is_read_from_the_runs_log() {
    // Given a step whose input (250 KB) is more than a task message may carry
    let b = bundle(5).await;
    b.publish(json!({
        "id": "archive", "name": "Archive", "kind": "custom",
        "steps": [{"id": "keep", "action": "records.put",
                   "input": {"collection": "archive", "key": "${input.key}",
                             "record": {"text": "${input.text}"}}}]
    }))
    .await;
    let key = format!("big-{}", uuid::Uuid::now_v7().simple());
    let text = "x".repeat(250 * 1024);
    let (id, _) = b
        .host
        .start_workflow("archive", None, json!({"key": key, "text": text}), &key)
        .await
        .expect("start");
    // When the records worker takes its message
    let source = b.env.source(&b.env.urls.tasks["records"], 5);
    let worker = &b.workers["records"];
    let mut carried = Vec::new();
    let taken = source
        .poll(async |batch| {
            for record in &batch.records {
                let m: TaskMessage =
                    serde_json::from_str(record.body.as_deref().unwrap_or_default())
                        .expect("a task message");
                carried.push(matches!(m, TaskMessage::Task { task: Some(_), .. }));
            }
            handlers::work(worker, batch).await
        })
        .await;
    // Then the message only named the attempt, the worker read it from the log and ran it
    assert_eq!((taken, carried), (1, vec![false]));
    assert_eq!(b.until_finished(&id, false).await, RunStatus::Completed);
    let record = b.observer.get("archive", &key).await.expect("get");
    assert_eq!(record.map(|r| r["text"].clone()), Some(json!(text)));
}
