//! The reconciler's Kubernetes I/O: a thin layer that reads what
//! [`decide`](super::decide::decide) needs and carries out its actions,
//! with an Event for each.
//!
//! Every call goes to the API server through a [`kube::Client`], so tests
//! put a mock service (`tower-test`) or a mock HTTP server behind it and
//! check the exact requests:
//!
//! | what | request |
//! | --- | --- |
//! | node labels | `GET /api/v1/nodes/{node}` |
//! | consumers on the node | `GET /api/v1/pods?fieldSelector=spec.nodeName={node}&labelSelector=camux.io/consumes&resourceVersion=0` (served from the API server's cache) |
//! | apply labels | `PATCH /api/v1/nodes/{node}?fieldManager=camux-reconciler&force=true`, `application/apply-patch+yaml`, body `{"apiVersion":"v1","kind":"Node","metadata":{"name":node,"labels":{..}}}` |
//! | remove foreign labels | `PATCH /api/v1/nodes/{node}?fieldManager=camux-reconciler`, `application/merge-patch+json`, body `{"metadata":{"labels":{key:null}}}` |
//! | evict | `POST /api/v1/namespaces/{ns}/pods/{pod}/eviction`, a `policy/v1` `Eviction` with the pod's UID as a precondition |
//! | event | `POST /apis/events.k8s.io/v1/namespaces/{ns}/events` (the pod's namespace; `default` for the node) |
//!
//! Reads and patches are retried on 429 and 5xx (and transport errors) a
//! few times with a doubling delay, honouring the server's
//! `retryAfterSeconds` up to a cap; an eviction is tried once per decision
//! and its outcome goes back into the decision's memory, which spaces the
//! next attempts (a 429 there means a PodDisruptionBudget said no). The
//! client must be built with kube's own retry layer off
//! (`Config::default_retry = false`, as `camux reconcile` does), or it
//! would re-send a refused eviction at once.

use super::decide::{Action, EvictOutcome, PodRef, PodView, CONSUMES_LABEL};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, MicroTime, ObjectMeta, Preconditions,
};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// The field manager of the reconciler's server-side applies (and the
/// `reportingController` of its Events).
pub const FIELD_MANAGER: &str = "camux-reconciler";
/// The Events' `reportingController`.
pub const CONTROLLER: &str = "camux.io/reconciler";

/// A failed API call, classified for the error metric.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct IoError {
    /// What was being done (`get node edge-1`).
    pub what: String,
    /// The client's error.
    #[source]
    pub source: kube::Error,
}

impl IoError {
    /// A short kind for metrics: `throttled` (429), `server` (5xx),
    /// `forbidden` (403), `not_found` (404), `conflict` (409), `client`
    /// (other 4xx), `transport` or `other`.
    pub fn kind(&self) -> &'static str {
        kind_of(&self.source)
    }
}

fn kind_of(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) => match s.code {
            429 => "throttled",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            500..=599 => "server",
            _ => "client",
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => "transport",
        _ => "other",
    }
}

fn retryable(e: &kube::Error) -> Option<Option<Duration>> {
    match e {
        kube::Error::Api(s) if s.code == 429 || (500..=599).contains(&s.code) => Some(
            s.details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(u64::from(s))),
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => Some(None),
        _ => None,
    }
}

/// How calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first delay; it doubles after each failure.
    pub base: Duration,
    /// The longest delay (also caps the server's `retryAfterSeconds`).
    pub max: Duration,
}

impl Default for Retry {
    /// 4 attempts, 200 ms doubling, at most 2 s apart.
    fn default() -> Self {
        Retry {
            attempts: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        }
    }
}

/// The reconciler's view of the API server, for one node.
#[derive(Clone)]
pub struct KubeIo {
    client: Client,
    node: String,
    instance: String,
    retry: Retry,
}

/// What carrying out one action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Labels applied or removed; the node's labels after it, as the
    /// API server returned them.
    Labelled(BTreeMap<String, String>),
    /// An eviction attempt and how it went.
    Evicted(PodRef, EvictOutcome),
    /// The action failed; the error's kind and text.
    Failed(&'static str, String),
}

impl KubeIo {
    /// I/O for `node`; `instance` names this reconciler in its Events
    /// (its pod name).
    pub fn new(client: Client, node: &str, instance: &str) -> KubeIo {
        KubeIo {
            client,
            node: node.into(),
            instance: instance.into(),
            retry: Retry::default(),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: Retry) -> KubeIo {
        self.retry = retry;
        self
    }

    /// The node this I/O is for.
    pub fn node(&self) -> &str {
        &self.node
    }

    async fn retrying<T, F, Fut>(
        &self,
        what: impl Fn() -> String,
        mut call: F,
    ) -> Result<T, IoError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = self.retry.base;
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) => match retryable(&e) {
                    Some(after) if attempt < self.retry.attempts.max(1) => {
                        let wait = after.unwrap_or(delay).min(self.retry.max);
                        tracing::debug!(what = %what(), error = %e, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                        tokio::time::sleep(wait).await;
                        delay = (delay * 2).min(self.retry.max);
                        attempt += 1;
                    }
                    _ => {
                        return Err(IoError {
                            what: what(),
                            source: e,
                        })
                    }
                },
            }
        }
    }

    /// The node's labels.
    pub async fn node_labels(&self) -> Result<BTreeMap<String, String>, IoError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = self
            .retrying(
                || format!("get node {}", self.node),
                || nodes.get(&self.node),
            )
            .await?;
        Ok(node.metadata.labels.unwrap_or_default())
    }

    /// The pods on the node that carry the `camux.io/consumes` label.
    pub async fn consumer_pods(&self) -> Result<Vec<PodView>, IoError> {
        self.pods_on_node(Some(CONSUMES_LABEL)).await
    }

    /// Every pod on the node (for the shutdown rule).
    pub async fn node_pods(&self) -> Result<Vec<PodView>, IoError> {
        self.pods_on_node(None).await
    }

    async fn pods_on_node(&self, label: Option<&str>) -> Result<Vec<PodView>, IoError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let mut lp = ListParams::default()
            .fields(&format!("spec.nodeName={}", self.node))
            .match_any();
        if let Some(l) = label {
            lp = lp.labels(l);
        }
        let list = self
            .retrying(
                || format!("list pods on node {}", self.node),
                || pods.list(&lp),
            )
            .await?;
        Ok(list.items.iter().map(pod_view).collect())
    }

    /// The UID of the controller (DaemonSet) owning pod `namespace/name`.
    pub async fn controller_of(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, IoError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = self
            .retrying(|| format!("get pod {namespace}/{name}"), || pods.get(name))
            .await?;
        Ok(pod_view(&pod).controller_uid)
    }

    /// Server-side apply of exactly `labels` with [`FIELD_MANAGER`], forced
    /// (the reconciler is the one authority on these keys).
    pub async fn apply_labels(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, IoError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = Patch::Apply(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": self.node, "labels": labels },
        }));
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        self.retrying(
            || format!("apply labels to node {}", self.node),
            || nodes.patch(&self.node, &pp, &patch),
        )
        .await
        .map(|n| n.metadata.labels.unwrap_or_default())
    }

    /// Removes `keys` from the node's labels, whoever set them.
    pub async fn remove_labels(
        &self,
        keys: &[String],
    ) -> Result<BTreeMap<String, String>, IoError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let nulls: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        let patch = Patch::Merge(json!({ "metadata": { "labels": nulls } }));
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        self.retrying(
            || format!("remove labels from node {}", self.node),
            || nodes.patch(&self.node, &pp, &patch),
        )
        .await
        .map(|n| n.metadata.labels.unwrap_or_default())
    }

    /// One eviction attempt (Eviction API, so PodDisruptionBudgets hold),
    /// with the pod's UID as a precondition.
    ///
    /// The body is a `policy/v1` [`Eviction`] made here rather than by
    /// `kube::Api::evict`, which (kube 5.0) serializes its delete options
    /// under `delete_options`, a key the API server ignores: the UID
    /// precondition would be lost.
    pub async fn evict(&self, pod: &PodRef) -> EvictOutcome {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let eviction = Eviction {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            delete_options: Some(DeleteOptions {
                preconditions: Some(Preconditions {
                    uid: Some(pod.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteOptions::default()
            }),
        };
        let sent = pods
            .create_subresource::<_, kube::core::Status>(
                "eviction",
                &pod.name,
                &PostParams::default(),
                &eviction,
            )
            .await;
        match sent {
            Ok(_) => EvictOutcome::Evicted,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => EvictOutcome::Gone,
            Err(kube::Error::Api(s)) if s.code == 429 => EvictOutcome::Refused(s.message),
            Err(e) => EvictOutcome::Failed(e.to_string()),
        }
    }

    /// Records an Event (`events.k8s.io/v1`) about `regarding`.
    pub async fn event(&self, ev: &EventSpec) -> Result<(), IoError> {
        let ns = ev
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let name = ev.regarding.name.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.camux.")),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            action: Some(ev.action.into()),
            reason: Some(ev.reason.into()),
            note: Some(truncate(&ev.note, 1024)),
            type_: Some(if ev.warning { "Warning" } else { "Normal" }.into()),
            regarding: Some(ev.regarding.clone()),
            reporting_controller: Some(CONTROLLER.into()),
            reporting_instance: Some(truncate(&self.instance, 128)),
            ..Event::default()
        };
        let pp = PostParams::default();
        self.retrying(
            || format!("record event {} about {name}", ev.reason),
            || events.create(&pp, &event),
        )
        .await
        .map(drop)
    }

    /// Carries out `action` and records its Event; never fails, so one bad
    /// call does not stop the others: the outcome says what happened.
    pub async fn execute(&self, action: &Action) -> Outcome {
        let (outcome, event) = match action {
            Action::ApplyLabels {
                labels,
                added,
                removed,
            } => match self.apply_labels(labels).await {
                Ok(after) => (Outcome::Labelled(after), self.label_event(added, removed)),
                Err(e) => (Outcome::Failed(e.kind(), e.to_string()), None),
            },
            Action::RemoveLabels { keys } => match self.remove_labels(keys).await {
                Ok(after) => (Outcome::Labelled(after), None),
                Err(e) => (Outcome::Failed(e.kind(), e.to_string()), None),
            },
            Action::Evict {
                pod,
                stream,
                down_for,
            } => {
                let result = self.evict(pod).await;
                let regarding = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace: Some(pod.namespace.clone()),
                    name: Some(pod.name.clone()),
                    uid: Some(pod.uid.clone()),
                    ..ObjectReference::default()
                };
                let (reason, warning, note) = match &result {
                    EvictOutcome::Evicted => (
                        "ConsumerEvicted",
                        false,
                        format!(
                            "stream {stream} has been down on node {} for {}s: evicted so its controller reschedules it on a node where the stream is ready",
                            self.node,
                            down_for.as_secs()
                        ),
                    ),
                    EvictOutcome::Gone => ("ConsumerGone", false, format!("consumer of stream {stream} is already gone")),
                    EvictOutcome::Refused(m) => (
                        "EvictionRefused",
                        true,
                        format!("stream {stream} down for {}s; eviction refused (429), will retry: {m}", down_for.as_secs()),
                    ),
                    EvictOutcome::Failed(m) => (
                        "EvictionFailed",
                        true,
                        format!("stream {stream} down for {}s; eviction failed, will retry: {m}", down_for.as_secs()),
                    ),
                };
                (
                    Outcome::Evicted(pod.clone(), result),
                    Some(EventSpec {
                        regarding,
                        reason,
                        action: "Evict",
                        note,
                        warning,
                    }),
                )
            }
        };
        if let Some(ev) = event {
            if let Err(e) = self.event(&ev).await {
                tracing::warn!(error = %e, "could not record the event");
            }
        }
        outcome
    }

    fn label_event(&self, added: &[String], removed: &[String]) -> Option<EventSpec> {
        if added.is_empty() && removed.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("ready: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("not ready: {}", removed.join(", ")));
        }
        Some(EventSpec {
            regarding: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node.clone()),
                ..ObjectReference::default()
            },
            reason: if removed.is_empty() {
                "StreamReady"
            } else {
                "StreamNotReady"
            },
            action: "Label",
            note: format!("streams {}", parts.join("; ")),
            warning: !removed.is_empty(),
        })
    }
}

/// An Event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    /// The object it is about (a pod, or the node).
    pub regarding: ObjectReference,
    /// `ConsumerEvicted`, `EvictionRefused`, `StreamReady`, ...
    pub reason: &'static str,
    /// `Evict` or `Label`.
    pub action: &'static str,
    /// The human-readable text.
    pub note: String,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What the decision needs of a pod.
pub fn pod_view(p: &Pod) -> PodView {
    PodView {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        consumes: p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONSUMES_LABEL).cloned()),
        terminating: p.metadata.deletion_timestamp.is_some(),
        controller_uid: p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone()),
    }
}
