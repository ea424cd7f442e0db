//! `camux reconcile`: the sidecar beside the daemon in the DaemonSet pod.
//! It turns the daemon's stream health into node labels and moves
//! consumers off the node when their stream has died, so their
//! ReplicaSets reschedule them on a backup camera node.
//!
//! Health flows one way: daemon `/status` -> [`decide`] -> Kubernetes.
//!
//! - [`decide`]: the pure decision, from what was observed to actions
//!   (every rule is written there and unit-tested table by table);
//! - [`daemon_status`]: reading the daemon's `/status` (untrusted input);
//! - [`kube_io`]: the thin Kubernetes layer (server-side apply of labels,
//!   the Eviction API, Events), tested against a mock API server;
//! - [`metrics`]: its `/metrics`;
//! - [`run`]: the loop, `/healthz`, and the shutdown rule.
//!
//! It acts on its own node only (`NODE_NAME` from the downward API), so
//! it needs no leader election; `docs/FAILOVER.md` describes the design
//! and its limits.

pub mod daemon_status;
pub mod decide;
pub mod kube_io;
pub mod metrics;
pub mod run;
