//! The reconciler's loop: every [`Options::interval`] read the daemon's
//! status, the node and its consumer pods, [`decide`], carry out the
//! actions through [`KubeIo`], feed the outcomes back; serve `/healthz`
//! and `/metrics`; on shutdown apply [`shutdown_actions`].

use super::daemon_status::{self, DaemonUrl};
use super::decide::{
    decide, shutdown_actions, Action, DaemonView, EvictOutcome, Memory, Note, Observed, Policy,
};
use super::kube_io::{KubeIo, Outcome};
use super::metrics::ReconcilerMetrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Its node.
    pub node: String,
    /// Its own pod `(namespace, name)`, for Events and the shutdown rule;
    /// without it labels are never removed on shutdown.
    pub pod: Option<(String, String)>,
    /// The daemon's HTTP address.
    pub daemon: DaemonUrl,
    /// Time between decisions.
    pub interval: Duration,
    /// Deadline for the daemon's `/status`.
    pub status_timeout: Duration,
    /// The decision's timing rules.
    pub policy: Policy,
}

/// The shared state `/healthz` and `/metrics` read.
#[derive(Clone)]
pub struct Shared {
    /// The metrics.
    pub metrics: ReconcilerMetrics,
    last_tick: Arc<Mutex<Instant>>,
    max_tick_age: Duration,
}

impl Shared {
    /// Fresh state; `/healthz` fails once no decision completed for
    /// `max_tick_age`.
    pub fn new(max_tick_age: Duration) -> Shared {
        Shared {
            metrics: ReconcilerMetrics::new(),
            last_tick: Arc::new(Mutex::new(Instant::now())),
            max_tick_age,
        }
    }

    fn tick(&self) {
        *self.last_tick.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn tick_age(&self) -> Duration {
        self.last_tick
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

/// The reconciler's HTTP routes: `/healthz` (200 while the loop goes
/// round, else 503: API errors do not fail it, since restarting would not
/// cure them) and `/metrics`.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    let age = s.tick_age();
    if age <= s.max_tick_age {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stuck: no decision for {:.1}s\n", age.as_secs_f64()),
        )
    }
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Serves [`router`] on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop)
        .await
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The loop; returns after `shutdown` resolves and the shutdown rule ran.
pub async fn run(opts: Options, io: KubeIo, shared: Shared, shutdown: impl Future<Output = ()>) {
    let start = Instant::now();
    let mut mem = Memory::default();
    let mut last_unknown_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let now = start.elapsed();
        let ok = cycle(&opts, &io, &shared, &mut mem, now, &mut last_unknown_log).await;
        shared.metrics.reconciles.inc();
        if ok {
            shared.metrics.last_success.set(unix_now());
        }
        shared.tick();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(opts.interval) => {}
        }
    }
    on_shutdown(&opts, &io, &shared).await;
}

async fn cycle(
    opts: &Options,
    io: &KubeIo,
    shared: &Shared,
    mem: &mut Memory,
    now: Duration,
    last_unknown_log: &mut Option<Instant>,
) -> bool {
    let m = &shared.metrics;
    let mut ok = true;
    let daemon = daemon_status::fetch(&opts.daemon, opts.status_timeout).await;
    let known = matches!(daemon, DaemonView::Known(_));
    m.daemon_known.set(i64::from(known));
    let (node_labels, pods) = if known {
        let labels = io.node_labels().await.map_err(|e| {
            m.error("get_node", e.kind());
            tracing::warn!(error = %e, "cannot read the node");
        });
        let pods = io.consumer_pods().await.map_err(|e| {
            m.error("list_pods", e.kind());
            tracing::warn!(error = %e, "cannot list the consumer pods");
        });
        ok &= labels.is_ok() && pods.is_ok();
        (labels.ok(), pods.ok())
    } else {
        // Nothing will be done: spare the API server the reads.
        m.error("daemon_status", "unknown");
        ok = false;
        (None, None)
    };
    let obs = Observed {
        node: opts.node.clone(),
        daemon,
        node_labels,
        pods,
    };
    let d = decide(&obs, mem, &opts.policy, now);
    *mem = d.memory;

    for note in &d.notes {
        match note {
            Note::DaemonUnknown { reason, for_ } => {
                // Say it when it starts, then once a minute.
                if last_unknown_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(reason = %reason, unknown_for_s = for_.as_secs(), "the daemon's status is unknown: changing nothing");
                    *last_unknown_log = Some(Instant::now());
                }
            }
            Note::UnlabellableStream(s) => {
                tracing::warn!(stream = %s, "stream name cannot be a label key (1-63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends): not labelled")
            }
            Note::EvictionBackoff { pod, wait } => {
                tracing::debug!(pod = %format!("{}/{}", pod.namespace, pod.name), wait_s = wait.as_secs(), "eviction waits for its retry")
            }
            Note::NodeUnknown | Note::PodsUnknown => {}
        }
    }
    if known {
        *last_unknown_log = None;
    }

    m.stream_ready.reset();
    for s in &d.up {
        m.stream_ready.with_label_values(&[s]).set(1);
    }
    m.stream_down_seconds.reset();
    for (s, sm) in &mem.streams {
        if let Some(since) = sm.down_since.filter(|_| !d.up.contains(s)) {
            m.stream_down_seconds
                .with_label_values(&[s])
                .set(now.saturating_sub(since).as_secs_f64());
        }
    }

    ok &= execute_all(io, shared, mem, now, &opts.policy, &d.actions).await;
    ok
}

/// Carries out `actions` in order. A removal of foreign labels goes only
/// for keys still there after the apply before it (the apply already
/// removes the labels the reconciler owns; the decision cannot tell whose
/// a label is).
async fn execute_all(
    io: &KubeIo,
    shared: &Shared,
    mem: &mut Memory,
    now: Duration,
    policy: &Policy,
    actions: &[Action],
) -> bool {
    let mut ok = true;
    let mut labels_now: Option<std::collections::BTreeMap<String, String>> = None;
    for action in actions {
        let action = match (action, &labels_now) {
            (Action::RemoveLabels { keys }, Some(after)) => {
                let keys: Vec<String> = keys
                    .iter()
                    .filter(|k| after.contains_key(*k))
                    .cloned()
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                Action::RemoveLabels { keys }
            }
            (a, _) => a.clone(),
        };
        let outcome = io.execute(&action).await;
        if let Outcome::Labelled(after) = &outcome {
            labels_now = Some(after.clone());
        }
        ok &= note_outcome(&action, &outcome, shared, mem, now, policy);
    }
    ok
}

fn note_outcome(
    action: &Action,
    outcome: &Outcome,
    shared: &Shared,
    mem: &mut Memory,
    now: Duration,
    policy: &Policy,
) -> bool {
    let m = &shared.metrics;
    match (action, outcome) {
        (Action::ApplyLabels { added, removed, .. }, Outcome::Labelled(_)) => {
            m.label_changes.inc();
            if !added.is_empty() || !removed.is_empty() {
                tracing::info!(ready = ?added, not_ready = ?removed, "node labels updated");
            }
            true
        }
        (Action::RemoveLabels { keys }, Outcome::Labelled(_)) => {
            m.label_changes.inc();
            tracing::info!(keys = ?keys, "stream labels set by others removed");
            true
        }
        (
            Action::Evict {
                stream, down_for, ..
            },
            Outcome::Evicted(pod, result),
        ) => {
            mem.record_eviction(&pod.uid, result, now, policy);
            let who = format!("{}/{}", pod.namespace, pod.name);
            let (label, ok) = match result {
                EvictOutcome::Evicted => {
                    tracing::info!(pod = %who, stream = %stream, down_s = down_for.as_secs(), "evicted a consumer of a down stream");
                    ("evicted", true)
                }
                EvictOutcome::Gone => ("gone", true),
                EvictOutcome::Refused(msg) => {
                    tracing::warn!(pod = %who, stream = %stream, reason = %msg, "eviction refused (disruption budget): will retry");
                    ("refused", false)
                }
                EvictOutcome::Failed(msg) => {
                    m.error("evict", "failed");
                    tracing::warn!(pod = %who, stream = %stream, error = %msg, "eviction failed: will retry");
                    ("failed", false)
                }
            };
            m.evictions.with_label_values(&[label]).inc();
            ok
        }
        (a, Outcome::Failed(kind, msg)) => {
            let op = match a {
                Action::ApplyLabels { .. } => "apply_labels",
                Action::RemoveLabels { .. } => "remove_labels",
                Action::Evict { .. } => "evict",
            };
            m.error(op, kind);
            tracing::warn!(op, error = %msg, "action failed: the next decision retries it");
            false
        }
        (a, o) => {
            tracing::error!(action = ?a, outcome = ?o, "unexpected outcome");
            false
        }
    }
}

async fn on_shutdown(opts: &Options, io: &KubeIo, shared: &Shared) {
    let Some((ns, name)) = &opts.pod else {
        tracing::info!(
            "stopping; own pod unknown (no POD_NAME/POD_NAMESPACE): labels left as they are"
        );
        return;
    };
    let controller = io
        .controller_of(ns, name)
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot read own pod"));
    let pods = io
        .node_pods()
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot list the node's pods"));
    let labels = io
        .node_labels()
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot read the node"));
    let actions = shutdown_actions(
        name,
        controller.as_ref().ok().and_then(|c| c.as_deref()),
        pods.as_ref().ok().map(|p| p.as_slice()),
        labels.as_ref().ok(),
    );
    if actions.is_empty() {
        tracing::info!("stopping; labels left for the successor on this node (or state unknown)");
    } else {
        tracing::info!("stopping; no successor on this node: removing the stream labels");
    }
    execute_all(
        io,
        shared,
        &mut Memory::default(),
        Duration::ZERO,
        &opts.policy,
        &actions,
    )
    .await;
}
