//! The coordinator function: wiring only. Each batch from the coordinator's FIFO queue is
//! applied by `eventflow_aws::handlers::coordinate` (see `eventflow_aws::lambda`).

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    Box::pin(eventflow_aws::lambda::serve_coordinator()).await
}
