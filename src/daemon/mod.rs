//! `camux daemon`: the DaemonSet's process. It publishes every stream of
//! its config at once, keeps each alive through source trouble, and tells
//! Prometheus and Kubernetes how it is doing.
//!
//! - [`config`]: the YAML config (a ConfigMap), typed and validated, every
//!   error with file, line, column and field.
//! - [`status`]: every stream's state and counters: what the supervisor
//!   writes and `/status`, `/metrics` and `/readyz` read.
//! - [`supervisor`]: one thread per stream: open the source and ring,
//!   publish, retry a failing source with capped exponential backoff.
//! - [`http`]: `/metrics` (Prometheus text format), `/healthz`, `/readyz`,
//!   `/status` (JSON).

//!
//! With only the `config` feature, just [`config`] is built.

pub mod config;
#[cfg(feature = "daemon")]
pub mod http;
#[cfg(feature = "daemon")]
pub mod metrics;
#[cfg(feature = "daemon")]
pub mod status;
#[cfg(feature = "daemon")]
pub mod supervisor;
