//! eventflow's engine: the workflow language and a pure, deterministic state machine.
//!
//! - [`model`]: the definition a user writes (JSON canonical, YAML accepted), with its JSON
//!   Schema ([`definition_schema`]).
//! - [`version`]: validation ([`validate`]) and the compiled [`Version`] the engine runs.
//! - [`expr`]: CEL expressions and `${...}` templates, bounded in cost and size.
//! - [`state`]: checkpoints, events, commands and history entries.
//! - [`decide()`]: the transition function; [`retry`] and [`time`] are its pure helpers.
//! - [`graph`]: a Mermaid picture of a definition.
//!
//! Nothing here reads a clock, draws a random number (jitter comes from a seed the host
//! passes) or performs IO; hosts (the local runtime, the Lambda functions) bring those.

pub mod decide;
pub mod duration;
pub mod expr;
pub mod graph;
pub mod migrate;
pub mod model;
pub mod parse;
pub mod retry;
pub mod schedule;
pub mod state;
pub mod time;
pub mod version;

pub use decide::{MAX_ITEMS, decide};
pub use duration::{Duration, Offset};
pub use expr::{Expr, ExprError, Template};
pub use migrate::{Mapping, Plan, Reason};
pub use model::*;
pub use parse::{Format, ParseError, definition_schema, parse_definition};
pub use schedule::{
    Due, Firing, PlannedEntry, PlannedRun, RecordPlan, Replan, Schedule, ScheduleError, due,
    next_fire, plan_event, plan_record, replan,
};
pub use state::*;
pub use version::{
    ActionRegistry, ActionSpec, CompiledDependency, Problem, Version, dependency_cycle, validate,
};
