//! The flow worker function: wiring only (see `eventflow_aws::lambda::serve_worker`); it names
//! its family's builder, so the binary holds that family's actions only.

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

use eventflow_aws::lambda::{self, workers};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    Box::pin(lambda::serve_worker(workers::flow)).await
}
