//! The embedded host of eventflow: everything in one process, no AWS account.
//!
//! - [`store`]: a redb database in the data directory (versions, checkpoints, history, tasks,
//!   timers, attempt results, domain records), fsync on every commit.
//! - [`dependencies`]: workflow dependencies (blocking, parallel, conditional) on this host;
//!   their index lives in `correlation`.
//! - [`outbox`]: email and notifications as `.eml` files in `<data dir>/outbox`.
//! - [`queue`]: the in-process task queue the worker pool reads.
//! - [`runtime`]: the loop that applies events with the pure engine, group-commits them, and
//!   hands tasks to a worker pool and timers to a timer wheel.
//! - [`plane`]: the API's operations on this host, one store, runtime and scheduler per
//!   tenant (what `eventflow serve` serves).
//! - [`scheduler`]: starts workflows from their cron, rate and event-relative triggers; its
//!   tables live in `schedules`.

mod correlation;
pub mod dependencies;
pub mod outbox;
pub mod plane;
pub mod queue;
pub mod runtime;
pub mod scheduler;
mod schedules;
pub mod store;

pub use store::{LocalStore, OpenError, RecordChange};
