//! The control plane of eventflow, written once for `eventflow serve` and the Lambda API.
//!
//! - [`tenant`]: tenant API keys: generated once, stored only as a hash, checked in constant time.
//! - [`webhook`]: signed webhook deliveries: HMAC-SHA256 over timestamp and body, a five-minute
//!   window, and the delivery id that makes a redelivery start nothing new.

pub mod tenant;
pub mod webhook;
