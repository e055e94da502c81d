//! What travels on the queues.
//!
//! Messages stay under SQS's 256 KB: a task message carries its attempt's command when it fits
//! ([`MAX_INLINE_TASK_BYTES`]), and otherwise only names it, and the worker reads the command
//! from the run's log, where the commit that dispatched it keeps it; an answer carries the
//! attempt's output inline, which is bounded by [`MAX_OUTPUT_BYTES`].

use eventflow_engine::{Command, Event};
use eventflow_ports::{Task, TimerRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An attempt's output larger than this is refused by the worker with a terminal error: it
/// could not travel to the coordinator nor be kept in one history item.
pub const MAX_OUTPUT_BYTES: usize = 200 * 1024;

/// A task message larger than this names its attempt instead of carrying it.
pub const MAX_INLINE_TASK_BYTES: usize = 240 * 1024;

/// An attempt as the commit that starts at `logged_at` dispatched it (the key of its log item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    pub logged_at: u64,
    pub task: Task,
}

/// An event for one run, on the coordinator's FIFO queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub tenant: String,
    pub execution_id: String,
    pub event: Event,
    /// The attempt this event answers, when it is an attempt's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<String>,
}

impl EventMessage {
    /// The FIFO group: one run's events apply in order, runs in parallel.
    pub fn group(&self) -> String {
        format!("{}#{}", self.tenant, self.execution_id)
    }

    /// The FIFO deduplication id (at most 128 characters): a digest of the event id, so an
    /// event sent twice within five minutes is delivered once.
    pub fn dedup(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}#{}", self.group(), self.event.id).as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A message on a task queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskMessage {
    /// Run this attempt (or compensation): `task` when it fits in the message, otherwise
    /// read from the log item of the commit that starts at `logged_at`.
    Task {
        tenant: String,
        execution_id: String,
        key: String,
        logged_at: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<Box<Task>>,
    },
    /// A timer that rode the queue's delay: tell the coordinator it fired.
    Timer { tenant: String, timer: TimerRecord },
}

/// The action families, one task queue and one worker function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Email,
    Http,
    Records,
    Notify,
    /// `workflow.start`, `fail`, and timers riding a delay.
    Flow,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Email,
        Family::Http,
        Family::Records,
        Family::Notify,
        Family::Flow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Email => "email",
            Family::Http => "http",
            Family::Records => "records",
            Family::Notify => "notify",
            Family::Flow => "flow",
        }
    }

    /// The family whose worker runs `action`.
    pub fn of(action: &str) -> Family {
        match action.split('.').next().unwrap_or_default() {
            "email" => Family::Email,
            "http" => Family::Http,
            "records" => Family::Records,
            "notify" => Family::Notify,
            _ => Family::Flow,
        }
    }

    /// The family that runs a step or compensation command.
    pub fn of_command(command: &Command) -> Family {
        match command {
            Command::RunStep { action, .. } | Command::RunCompensation { action, .. } => {
                Family::of(action)
            }
            _ => Family::Flow,
        }
    }

    /// Whether this family's worker runs `action`.
    pub fn runs(self, action: &str) -> bool {
        Family::of(action) == self
    }
}

/// The size of a JSON value once written, to check a limit before sending.
pub fn json_size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventflow_engine::EventKind;

    #[test]
    fn every_action_has_a_family_and_the_dedup_id_fits_fifo() {
        let registry = eventflow_actions::registry();
        for name in registry.specs().map(|s| s.name.as_str()) {
            let f = Family::of(name);
            assert!(f.runs(name), "{name}");
        }
        assert_eq!(Family::of("email.send"), Family::Email);
        assert_eq!(Family::of("records.update"), Family::Records);
        assert_eq!(Family::of("workflow.start"), Family::Flow);
        let m = EventMessage {
            tenant: "acme".into(),
            execution_id: "ex-1".into(),
            event: Event::new("x".repeat(300), EventKind::Pause),
            answers: None,
        };
        assert_eq!(m.dedup().len(), 64);
        assert_eq!(m.group(), "acme#ex-1");
    }
}
