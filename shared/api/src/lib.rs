//! The control plane of eventflow, written once for `eventflow serve` and the Lambda API.
//!
//! - [`plane`]: the operations of the API as a trait per host, scoped to one tenant.
//! - [`http`]: the HTTP API over that trait (axum): routes, authentication, limits, errors.
//! - [`tenant`]: tenant API keys: generated once, stored only as a hash, checked in constant time.
//! - [`webhook`]: signed webhook deliveries: HMAC-SHA256 over timestamp and body, a five-minute
//!   window, and the delivery id that makes a redelivery start nothing new.

pub mod http;
pub mod plane;
pub mod tenant;
pub mod webhook;
