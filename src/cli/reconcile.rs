//! `camux reconcile`: the DaemonSet pod's sidecar (see
//! [`camux::reconciler`]).

use super::common::parse_duration;
use super::{json, Status};
use anyhow::Context;
use camux::daemon::config::LogFormat;
use camux::reconciler::daemon_status::DaemonUrl;
use camux::reconciler::decide::Policy;
use camux::reconciler::kube_io::KubeIo;
use camux::reconciler::run::{self, Options, Shared};
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

/// The long `--help` text.
pub const LONG_ABOUT: &str = "\
Run the sidecar that keeps a camera node's Kubernetes state in step with
its camux daemon. Beside the daemon in the DaemonSet pod, acting on its own
node only:

  - labels the node stream.camux.io/<stream>=ready for every stream that
    publishes (server-side apply, field manager camux-reconciler, so other
    labels are never touched) and removes the label when it does not;
  - when a stream has been down for --grace, evicts the pods on this node
    labelled camux.io/consumes=<stream> (Eviction API, so disruption
    budgets hold; a refusal is retried with backoff), so their controllers
    reschedule them where the stream is ready; an Event records each action;
  - fails safe: while the daemon's /status cannot be read it changes
    nothing, and says so (log, camux_reconciler_daemon_status_known 0).

On SIGTERM it stops; it removes its labels only when no other pod of its
DaemonSet runs on the node (a rolling update's successor keeps them).

It talks to the API server with the pod's service account (in a cluster)
or the current kubeconfig context (KUBECONFIG, ~/.kube/config).

HTTP (--listen, default 0.0.0.0:9471):
  /healthz  200 while the loop goes round (API errors do not fail it)
  /metrics  camux_reconciler_* (reconciles, errors by op and kind,
            evictions by result, label changes, last success time)

Prints one JSON line to stdout once serving:
  {\"event\":\"started\",\"listen\":\"<addr>\",\"node\":\"<node>\"}

Example (what the DaemonSet runs; NODE_NAME etc. from the downward API):
  camux reconcile --daemon-url http://127.0.0.1:9470 --grace 30s";

/// Keep the node's labels in step with the daemon's streams; evict consumers of dead streams.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReconcileArgs {
    /// This node's name (in a pod: from the downward API, spec.nodeName).
    #[arg(long, env = "NODE_NAME", value_name = "NODE")]
    pub node_name: String,
    /// This pod's name, for Events and the shutdown rule (downward API,
    /// metadata.name). Without it, labels stay on shutdown.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace (downward API, metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub pod_namespace: Option<String>,
    /// The daemon's HTTP address (same pod: loopback).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9470")]
    pub daemon_url: DaemonUrl,
    /// The reconciler's own HTTP address (/healthz, /metrics).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9471")]
    pub listen: SocketAddr,
    /// How long a stream must be down before its consumers are evicted.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub grace: Duration,
    /// How long a stream must be up without a break before an earlier
    /// outage is forgotten (a flapping stream still counts as down).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Time between decisions.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// First delay before retrying a refused eviction (doubles, up to 60 s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub eviction_retry: Duration,
    /// Log format.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"], default_value = "json")]
    pub log_format: String,
}

/// Runs `camux reconcile`.
pub fn run(args: ReconcileArgs) -> anyhow::Result<Status> {
    super::daemon::init_logs(if args.log_format == "json" {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(main(args))
}

async fn main(args: ReconcileArgs) -> anyhow::Result<Status> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let mut config = kube::Config::infer().await.context(
        "cannot find the Kubernetes API: not in a pod (no service account) and no usable kubeconfig \
         (KUBECONFIG or ~/.kube/config)",
    )?;
    // kube's own retry layer (429/503/504) would re-send a refused
    // eviction at once; KubeIo retries what it should, as tested.
    config.default_retry = false;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot make a Kubernetes client")?;
    let instance = args
        .pod_name
        .clone()
        .unwrap_or_else(|| args.node_name.clone());
    let io = KubeIo::new(client, &args.node_name, &instance);

    let max = Policy::default();
    let opts = Options {
        node: args.node_name.clone(),
        pod: args.pod_namespace.clone().zip(args.pod_name.clone()),
        daemon: args.daemon_url.clone(),
        interval: args.interval,
        status_timeout: args.interval.min(Duration::from_secs(2)),
        policy: Policy {
            grace: args.grace,
            settle: args.settle,
            retry_base: args.eviction_retry,
            retry_max: max.retry_max.max(args.eviction_retry),
        },
    };
    // A decision takes at most a few API timeouts; three missed rounds
    // beyond that mean the loop is stuck.
    let shared = Shared::new(args.interval * 3 + Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot serve HTTP on {}", args.listen))?;
    let local = listener.local_addr()?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(run::serve(listener, shared.clone(), async {
        let _ = http_stopped.await;
    }));
    tracing::info!(listen = %local, node = %args.node_name, api = %server, daemon = %args.daemon_url,
        grace_s = args.grace.as_secs_f64(), "camux reconciler started");
    json::emit(
        &mut std::io::stdout().lock(),
        &serde_json::json!({"event": "started", "listen": local.to_string(), "node": args.node_name}),
    )?;

    run::run(opts, io, shared, async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
    .await;
    let _ = stop_http.send(());
    let _ = http.await;
    tracing::info!("camux reconciler stopped");
    Ok(Status::Success)
}
