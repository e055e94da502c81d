//! The API function: wiring only. At init, once: JSON logs, the SDK configuration, the store
//! (the table `EVENTFLOW_TABLE`; the tenant is set per request), the queues
//! (`EVENTFLOW_*_QUEUE_URL`) and the host; then every API Gateway HTTP API request is served by
//! `eventflow_api::http::router`, the handlers of `eventflow serve`, over
//! `eventflow_aws::plane::AwsTenants`.

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

use std::sync::Arc;

use eventflow_aws::lambda;
use eventflow_aws::plane::AwsTenants;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda::logging();
    let config = lambda::sdk_config().await;
    let host = lambda::host(&config).await?;
    let tenants = Arc::new(AwsTenants::new(host));
    lambda_http::run(eventflow_api::http::router(tenants)).await
}
