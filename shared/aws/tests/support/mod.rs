//! What the AWS tests share: their resources on the emulators, and the event-source emulator.

pub(crate) mod env;
pub(crate) mod events;
pub(crate) mod meter;
