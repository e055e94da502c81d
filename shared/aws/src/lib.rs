//! The AWS host of eventflow: the ports of `shared/ports` on DynamoDB, SQS and SES, and the
//! handlers each Lambda function's `main.rs` wires. The layout of the table and the queues is
//! in `infra/README.md`.
//!
//! Endpoints come from the standard `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`
//! variables that `aws-config` reads: the same code talks to AWS, to LocalStack and to moto.

pub mod dynamo;
pub mod handlers;
pub mod host;
pub mod lambda;
pub mod messages;
pub mod plane;
pub mod schedules;
pub mod ses;
pub mod sqs;

/// The Lambda event types the handlers take.
pub mod events {
    pub use aws_lambda_events::event::eventbridge::EventBridgeEvent;
    pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
}
