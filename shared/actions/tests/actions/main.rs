//! The actions, run as a host runs them: against hand-written in-memory fakes of the ports,
//! and for `http.request` against a real HTTP server on 127.0.0.1.

mod catalogue;
mod email;
mod fail;
mod http;
mod notify;
mod records;
mod support;
mod workflow;
