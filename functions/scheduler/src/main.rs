//! The scheduler function: wiring only. EventBridge invokes it every minute;
//! `eventflow_aws::handlers::tick` sweeps due timers, stuck attempts and due schedules.

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    Box::pin(eventflow_aws::lambda::serve_scheduler()).await
}
