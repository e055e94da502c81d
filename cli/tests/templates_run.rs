//! The built-in templates, run to the end on the engine's `decide()` with a fake action host
//! and a virtual clock: they must not only validate but work, their expressions evaluating on
//! realistic input and their waits, loops, fan-outs, retries and rollbacks doing what the
//! template promises.
//!
//! The fake host answers as the action contracts the templates assume (and the runtime is to
//! implement) say: `http.request` gives `{status, headers, body}`, `records.get` gives
//! `{found, record}`, `fail` fails its first `times` attempts (every attempt without `times`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use eventflow_actions::registry;
use eventflow_engine::{
    Checkpoint, Command, Event, EventKind, Format, RunStatus, StepError, StepStatus, Timer,
    Timestamp, Version, decide, parse_definition,
};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

fn template(name: &str) -> Version {
    let path = repo().join("workflows").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let def = parse_definition(&text, Format::Json).unwrap_or_else(|e| panic!("{name}: {e}"));
    Version::compile(def, 1, &registry()).unwrap_or_else(|p| panic!("{name}: {p:#?}"))
}

fn example(name: &str) -> Value {
    let path = repo().join("examples").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// One action attempt the host was asked to run.
#[derive(Debug, Clone)]
struct Call {
    step: String,
    item: Option<u32>,
    attempt: u32,
    action: String,
    input: Value,
    at: Timestamp,
}

/// A run of a template against the fake host, to its end.
struct Sim {
    version: Version,
    cp: Checkpoint,
    now: Timestamp,
    queue: VecDeque<Command>,
    timers: Vec<(Timestamp, Timer)>,
    calls: Vec<Call>,
    compensations: Vec<Call>,
    /// Steps whose action always fails, terminally.
    broken: Vec<&'static str>,
    /// The follow-up iteration at which the CRM says the sponsor replied.
    replied_at: Option<u32>,
    finished: Option<RunStatus>,
    events: u64,
}

impl Sim {
    fn new(name: &str, input: Value, start: &str) -> Sim {
        let version = template(name);
        if let Err(p) = version.check_input(&input) {
            panic!("{name}: the test input does not satisfy input_schema: {p:#?}");
        }
        let now = at(start);
        let cp = Checkpoint::new(&version, "run-1", input, now);
        Sim {
            version,
            cp,
            now,
            queue: VecDeque::new(),
            timers: Vec::new(),
            calls: Vec::new(),
            compensations: Vec::new(),
            broken: Vec::new(),
            replied_at: None,
            finished: None,
            events: 0,
        }
    }

    fn send(&mut self, kind: EventKind) {
        self.events += 1;
        assert!(self.events < 10_000, "the run does not end");
        let event = Event::new(format!("ev-{}", self.events), kind);
        let d = decide(&self.version, self.cp.clone(), event, self.now, 42);
        self.cp = d.checkpoint;
        self.queue.extend(d.commands);
    }

    fn run(mut self) -> Sim {
        self.send(EventKind::Started);
        while self.finished.is_none() {
            if let Some(cmd) = self.queue.pop_front() {
                self.apply(cmd);
                continue;
            }
            // Nothing to do until the next timer: move the clock there.
            self.timers.sort_by_key(|(t, _)| *t);
            assert!(!self.timers.is_empty(), "the run is stuck: {:#?}", self.cp);
            let (due, timer) = self.timers.remove(0);
            self.now = self.now.max(due);
            self.send(EventKind::TimerFired { timer });
        }
        self
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::RunStep {
                step,
                item,
                attempt,
                action,
                input,
                ..
            } => {
                let call = Call {
                    step: step.clone(),
                    item,
                    attempt,
                    action,
                    input,
                    at: self.now,
                };
                let result = self.act(&call);
                self.calls.push(call);
                self.send(match result {
                    Ok(output) => EventKind::StepSucceeded {
                        step,
                        item,
                        attempt,
                        output,
                    },
                    Err(error) => EventKind::StepFailed {
                        step,
                        item,
                        attempt,
                        error,
                    },
                });
            }
            Command::RunCompensation {
                step,
                item,
                attempt,
                action,
                input,
                ..
            } => {
                self.compensations.push(Call {
                    step: step.clone(),
                    item,
                    attempt,
                    action,
                    input,
                    at: self.now,
                });
                self.send(EventKind::CompensationSucceeded {
                    step,
                    item,
                    attempt,
                });
            }
            Command::ScheduleTimer { timer, at } => self.timers.push((at, timer)),
            Command::Finish { status, .. } => self.finished = Some(status),
            Command::EmitMetric { .. } => {}
        }
    }

    /// The fake host: every action succeeds as its contract says, except `fail` and broken steps.
    fn act(&self, call: &Call) -> Result<Value, StepError> {
        if self.broken.contains(&call.step.as_str()) {
            return Err(StepError::terminal("Broken", "broken by the test"));
        }
        match call.action.as_str() {
            "fail" => {
                let retryable = call.input["retryable"].as_bool().unwrap_or(false);
                let fails = match call.input.get("times") {
                    Some(times) => u64::from(call.attempt) <= times.as_u64().expect("times"),
                    None => true,
                };
                let message = call.input["message"].as_str().unwrap_or("failed as told");
                match (fails, retryable) {
                    (false, _) => Ok(json!({"attempt": call.attempt})),
                    (true, true) => Err(StepError::retryable("Fail", message)),
                    (true, false) => Err(StepError::terminal("Fail", message)),
                }
            }
            "http.request" => {
                let replied = self.replied_at.is_some_and(|n| call.item >= Some(n));
                Ok(json!({"status": 200, "headers": {},
                          "body": {"id": "booking-17", "replied": replied}}))
            }
            "records.get" => Ok(json!({"found": true, "record": self.record(&call.input)})),
            _ => Ok(json!({"ok": true})),
        }
    }

    fn record(&self, input: &Value) -> Value {
        match input["collection"].as_str() {
            Some("survey_responses") => json!({"attendee_ids": ["att-1"]}),
            Some("deliverables") => {
                let day = days_from(self.now);
                json!({"items": [
                    {"title": "Sponsor logo (Ferrous Cloud)", "owner_email": "amira@ferrous-cloud.example",
                     "due_at": day(-2), "status": "open"},
                    {"title": "Booth floor plan", "owner_email": "ops@venue.example",
                     "due_at": day(2), "status": "open"},
                    {"title": "Catering numbers", "owner_email": "lena@rustnation.example",
                     "due_at": day(-1), "status": "delivered"},
                    {"title": "Speaker slides", "owner_email": "talks@rustnation.example",
                     "due_at": day(20), "status": "open"}
                ]})
            }
            _ => json!({}),
        }
    }

    fn status(&self, step: &str) -> StepStatus {
        self.cp.step(step).expect(step).status
    }

    fn calls_of(&self, step: &str) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.step == step).collect()
    }
}

/// RFC 3339 instants `n` days from `now`.
fn days_from(now: Timestamp) -> impl Fn(i64) -> String {
    move |n| {
        let span = eventflow_engine::Duration::from_secs(86_400 * n.unsigned_abs()).chrono();
        let t = if n < 0 { now - span } else { now + span };
        t.to_rfc3339()
    }
}

// ---- event-launch --------------------------------------------------------------------------

#[test]
fn event_launch_completes_on_the_example_input_after_one_retry() {
    let sim = Sim::new(
        "event-launch.json",
        example("event-launch.input.json"),
        "2026-05-04T08:00:00Z",
    )
    .run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    // flaky_times: 1 -> the demo step fails once, then its retry succeeds
    let flaky = sim.calls_of("demo_flaky_step");
    assert_eq!(flaky.len(), 2);
    assert_eq!(flaky[0].input["times"], 1);
    assert_eq!(sim.status("demo_fail_after_announce"), StepStatus::Skipped);
    // the page goes to the site API
    let page = sim.calls_of("publish_page");
    assert_eq!(page[0].input["method"], "PUT");
    assert_eq!(
        page[0].input["url"],
        "http://127.0.0.1:8787/api/events/rust-nation-berlin-2027"
    );
    // every sponsor hears about it, each by name
    let sponsors = sim.calls_of("notify_sponsors");
    assert_eq!(sponsors.len(), 3);
    assert!(sponsors.iter().any(|c| {
        c.input["to"] == "amira@ferrous-cloud.example"
            && c.input["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Hello Amira Haddad,\n"))
    }));
    // and the nurture is started for this event
    let nurture = sim.calls_of("schedule_nurture");
    assert_eq!(nurture[0].input["workflow"], "attendee-nurture");
    assert_eq!(
        nurture[0].input["input"]["attendees"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert!(sim.compensations.is_empty());
}

#[test]
fn the_event_record_a_launch_writes_feeds_the_scheduled_nurture_and_follow_up() {
    // Given the event record as the launch leaves it (created, then registration opened)
    let sim = Sim::new(
        "event-launch.json",
        example("event-launch.input.json"),
        "2026-05-04T08:00:00Z",
    )
    .run();
    let mut record = sim.calls_of("create_event")[0].input["record"].clone();
    let changes = sim.calls_of("open_registration")[0].input["changes"].clone();
    for (k, v) in changes.as_object().expect("changes") {
        record[k] = v.clone();
    }
    // When the nurture's and the follow-up's event-relative triggers build their input from it
    for name in ["attendee-nurture.json", "post-event-followup.json"] {
        let version = template(name);
        let trigger = version
            .definition()
            .triggers
            .iter()
            .find(|t| matches!(t, eventflow_engine::Trigger::EventRelative { .. }))
            .expect("an event-relative trigger");
        let input =
            eventflow_engine::schedule::event_input(trigger, &record, at("2027-04-01T07:00:00Z"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Then the workflow accepts it
        if let Err(p) = version.check_input(&input) {
            panic!("{name} refuses the input its trigger makes: {p:#?}\n{input:#}");
        }
        assert_eq!(
            input["attendees"].as_array().map(Vec::len),
            Some(4),
            "{name}"
        );
    }
}

#[test]
fn event_launch_rolls_back_everything_when_told_to_fail_after_the_announcements() {
    let sim = Sim::new(
        "event-launch.json",
        example("event-launch.rollback.input.json"),
        "2026-05-04T08:00:00Z",
    )
    .run();
    assert_eq!(sim.finished, Some(RunStatus::Compensated), "{:#?}", sim.cp);
    // retried once (max_attempts 2), then the rollback
    assert_eq!(sim.calls_of("demo_fail_after_announce").len(), 2);
    assert!(sim.calls_of("notify_sponsors").is_empty());
    assert!(sim.calls_of("schedule_nurture").is_empty());
    let undone: Vec<&str> = sim.compensations.iter().map(|c| c.step.as_str()).collect();
    let pos = |s: &str| {
        undone
            .iter()
            .position(|u| *u == s)
            .unwrap_or_else(|| panic!("{s} was not compensated: {undone:?}"))
    };
    // in reverse dependency order
    assert!(pos("announce_email") < pos("open_registration"));
    assert!(pos("announce_webhook") < pos("open_registration"));
    assert!(pos("open_registration") < pos("publish_page"));
    assert!(pos("publish_page") < pos("create_event"));
    // the page comes down with the explicit DELETE
    let delete = &sim.compensations[pos("publish_page")];
    assert_eq!(delete.action, "http.request");
    assert_eq!(delete.input["method"], "DELETE");
    assert_eq!(
        delete.input["url"],
        "http://127.0.0.1:8787/api/events/rust-nation-berlin-2027"
    );
    assert_eq!(
        sim.compensations[pos("announce_webhook")].input["body"]["type"],
        "event.withdrawn"
    );
}

// ---- sponsor-outreach ----------------------------------------------------------------------

fn outreach_input() -> Value {
    json!({
        "event": {"id": "rust-nation-berlin-2027", "name": "Rust Nation Berlin 2026",
                  "starts_at": "2026-10-15T09:00:00+02:00"},
        "sponsor": {"id": "oxide-tools", "name": "Oxide Tools", "contact_name": "Jonas Berg",
                    "contact_email": "sponsoring@oxide-tools.example"},
        "package": {"tier": "gold", "price_eur": 8000,
                    "proposal_url": "https://rustnation.example/sponsoring/gold.pdf"},
        "crm": {"api_url": "http://127.0.0.1:8787/crm"},
        "organizer": {"name": "Lena Vogel", "email": "lena@rustnation.example"}
    })
}

#[test]
fn sponsor_outreach_follows_up_until_the_sponsor_replies() {
    let mut sim = Sim::new(
        "sponsor-outreach.json",
        outreach_input(),
        "2026-05-04T08:00:00Z",
    );
    sim.replied_at = Some(2);
    let sim = sim.run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    let follow_ups = sim.calls_of("follow_up");
    assert_eq!(follow_ups.len(), 2, "stops once they replied");
    let proposal = sim.calls_of("send_proposal")[0].at;
    // five days after the proposal, then four days between follow-ups
    assert_eq!((follow_ups[0].at - proposal).num_days(), 5);
    assert_eq!((follow_ups[1].at - follow_ups[0].at).num_days(), 4);
    assert_eq!(follow_ups[1].input["body"]["follow_up_number"], 2);
    let outcome = &sim.calls_of("record_outcome")[0].input;
    assert_eq!(outcome["changes"]["outreach"]["status"], "replied");
    assert_eq!(sim.status("release_unanswered_slot"), StepStatus::Skipped);
}

#[test]
fn sponsor_outreach_gives_up_after_three_follow_ups_and_frees_the_slot() {
    let sim = Sim::new(
        "sponsor-outreach.json",
        outreach_input(),
        "2026-05-04T08:00:00Z",
    )
    .run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    let follow_ups = sim.calls_of("follow_up");
    assert_eq!(follow_ups.len(), 3);
    assert_eq!(follow_ups[2].input["body"]["template"], "last-call");
    let outcome = &sim.calls_of("record_outcome")[0].input;
    assert_eq!(outcome["changes"]["outreach"]["status"], "no_reply");
    assert_eq!(outcome["changes"]["outreach"]["follow_ups_sent"], 3);
    assert_eq!(sim.status("release_unanswered_slot"), StepStatus::Succeeded);
}

#[test]
fn sponsor_outreach_releases_the_held_slot_when_the_proposal_cannot_be_sent() {
    let mut sim = Sim::new(
        "sponsor-outreach.json",
        outreach_input(),
        "2026-05-04T08:00:00Z",
    );
    sim.broken = vec!["send_proposal"];
    let sim = sim.run();
    assert_eq!(sim.finished, Some(RunStatus::Compensated), "{:#?}", sim.cp);
    let release = &sim.compensations[0];
    assert_eq!(release.step, "hold_slot");
    assert_eq!(release.action, "records.delete");
    assert_eq!(release.input["key"], "rust-nation-berlin-2027/oxide-tools");
}

// ---- attendee-nurture ----------------------------------------------------------------------

fn nurture_input() -> Value {
    let launch = example("event-launch.input.json");
    json!({
        "event": {"id": "rust-nation-berlin-2027", "name": "Rust Nation Berlin 2026",
                  "starts_at": "2026-10-15T09:00:00+02:00", "time_zone": "Europe/Berlin",
                  "venue": launch["event"]["venue"],
                  "page_url": "https://rustnation.example/berlin-2026"},
        "organizer": launch["organizer"],
        "attendees": launch["attendees"]
    })
}

#[test]
fn attendee_nurture_sends_three_reminders_at_nine_in_the_morning_local_time() {
    let sim = Sim::new(
        "attendee-nurture.json",
        nurture_input(),
        "2026-05-04T08:00:00Z",
    )
    .run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    // 09:00 Berlin is 07:00 UTC in October (CEST), on each reminder's day
    for (step, when) in [
        ("remind_two_weeks", "2026-10-01T07:00:00Z"),
        ("remind_one_week", "2026-10-08T07:00:00Z"),
        ("remind_tomorrow", "2026-10-14T07:00:00Z"),
    ] {
        let calls = sim.calls_of(step);
        assert_eq!(calls.len(), 4, "{step}: one per attendee");
        assert!(
            calls.iter().all(|c| c.at == at(when)),
            "{step}: {:?}",
            calls[0].at
        );
    }
}

#[test]
fn attendee_nurture_started_late_skips_the_reminders_whose_moment_has_passed() {
    // Started nine days before the event: the two-week reminder would be a week late.
    let sim = Sim::new(
        "attendee-nurture.json",
        nurture_input(),
        "2026-10-06T12:00:00Z",
    )
    .run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    assert_eq!(sim.status("remind_two_weeks"), StepStatus::Skipped);
    assert_eq!(sim.calls_of("remind_one_week").len(), 4);
    assert_eq!(sim.calls_of("remind_tomorrow").len(), 4);
}

// ---- post-event-followup -------------------------------------------------------------------

#[test]
fn post_event_followup_thanks_everyone_then_reminds_only_those_who_did_not_answer() {
    let input = json!({
        "event": {"id": "rust-nation-berlin-2027", "name": "Rust Nation Berlin 2026",
                  "ends_at": "2026-10-16T18:00:00+02:00", "time_zone": "Europe/Berlin"},
        "organizer": {"name": "Lena Vogel", "email": "lena@rustnation.example"},
        "attendees": [
            {"id": "att-1", "email": "marta.nowak@example.org", "name": "Marta Nowak"},
            {"id": "att-2", "email": "tom.schulz@example.org", "name": "Tom Schulz"},
            {"id": "att-3", "email": "priya.raman@example.org", "name": "Priya Raman"}
        ],
        "sponsors": [
            {"id": "ferrous-cloud", "name": "Ferrous Cloud",
             "contact_email": "amira@ferrous-cloud.example", "leads_scanned": 112},
            {"id": "crab-labs", "name": "Crab Labs", "contact_email": "hello@crablabs.example"}
        ],
        "survey": {"url": "https://survey.rustnation.example/berlin-2026"},
        "reports": {"base_url": "https://reports.rustnation.example/berlin-2026"}
    });
    let sim = Sim::new("post-event-followup.json", input, "2026-10-16T17:00:00Z").run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    let thanks = sim.calls_of("thank_attendees");
    assert_eq!(thanks.len(), 3);
    // the day after the event ends, 10:00 Berlin
    assert_eq!(thanks[0].at, at("2026-10-17T08:00:00Z"));
    assert!(
        thanks.iter().any(|c| c.input["text"].as_str().is_some_and(
            |t| t.contains("https://survey.rustnation.example/berlin-2026?attendee=att-2")
        ))
    );
    let reminders = sim.calls_of("remind_non_responders");
    assert_eq!(reminders.len(), 2, "att-1 already answered");
    assert!(
        reminders
            .iter()
            .all(|c| c.input["to"] != "marta.nowak@example.org")
    );
    assert_eq!((reminders[0].at - thanks[0].at).num_days(), 7);
    let reports = sim.calls_of("sponsor_reports");
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().any(|c| {
        c.input["text"]
            .as_str()
            .is_some_and(|t| t.contains("scanned 112 leads"))
    }));
}

// ---- deliverable-tracking ------------------------------------------------------------------

#[test]
fn deliverable_tracking_nudges_due_soon_and_escalates_overdue() {
    let input = json!({
        "event": {"id": "rust-nation-berlin-2027", "name": "Rust Nation Berlin 2026"},
        "organizer": {"name": "Lena Vogel", "email": "lena@rustnation.example"}
    });
    let sim = Sim::new("deliverable-tracking.json", input, "2026-09-01T07:00:00Z").run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    let nudges = sim.calls_of("nudge_due_soon");
    assert_eq!(nudges.len(), 1);
    assert_eq!(nudges[0].input["to"], "ops@venue.example");
    let escalation = sim.calls_of("escalate_overdue");
    assert_eq!(escalation.len(), 1);
    assert_eq!(escalation[0].input["channel"], "event-ops");
    assert_eq!(
        escalation[0].input["items"].as_array().map(Vec::len),
        Some(1),
        "the delivered one is not overdue"
    );
    // re-checked every two hours, five times, then the organizer is told
    let rechecks = sim.calls_of("recheck_overdue");
    assert_eq!(rechecks.len(), 5);
    assert_eq!((rechecks[4].at - rechecks[0].at).num_hours(), 8);
    let told = sim.calls_of("tell_organizer");
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].input["to"], "lena@rustnation.example");
}

// ---- custom-example ------------------------------------------------------------------------

fn meetup_input() -> Value {
    json!({
        "meetup": {"id": "rust-berlin-2026-06", "title": "Rust Berlin June Meetup",
                   "starts_at": "2026-06-18T19:00:00+02:00", "ends_at": "2026-06-18T22:00:00+02:00",
                   "time_zone": "Europe/Berlin", "talks": ["Async drop, at last", "Embedded on a budget"]},
        "venue": {"name": "c-base", "booking_api_url": "http://127.0.0.1:8787/venue",
                  "room": "main hall", "seats": 80},
        "community": {"webhook_url": "http://127.0.0.1:8787/hooks/meetup-chat",
                      "rsvp_url": "https://rust-berlin.example/rsvp/2026-06"}
    })
}

#[test]
fn the_meetup_example_books_posts_and_reminds_the_evening_before() {
    let sim = Sim::new(
        "custom-example.json",
        meetup_input(),
        "2026-06-01T10:00:00Z",
    )
    .run();
    assert_eq!(sim.finished, Some(RunStatus::Completed), "{:#?}", sim.cp);
    let saved = &sim.calls_of("save_meetup")[0].input;
    assert_eq!(saved["record"]["booking_id"], "booking-17");
    let post = &sim.calls_of("post_to_community")[0].input;
    assert!(
        post["body"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Talks: Async drop, at last and more.")),
        "{post}"
    );
    // 17:00 Berlin the day before
    assert_eq!(
        sim.calls_of("post_reminder")[0].at,
        at("2026-06-17T15:00:00Z")
    );
}

#[test]
fn the_meetup_example_cancels_the_booking_it_made_when_posting_fails() {
    let mut sim = Sim::new(
        "custom-example.json",
        meetup_input(),
        "2026-06-01T10:00:00Z",
    );
    sim.broken = vec!["post_to_community"];
    let sim = sim.run();
    assert_eq!(sim.finished, Some(RunStatus::Compensated), "{:#?}", sim.cp);
    let cancel = sim
        .compensations
        .iter()
        .find(|c| c.step == "book_room")
        .expect("the booking is cancelled");
    assert_eq!(cancel.input["method"], "DELETE");
    assert_eq!(
        cancel.input["url"],
        "http://127.0.0.1:8787/venue/bookings/booking-17"
    );
}
