//! The reconciler's decision: one pure function from what it observed
//! (the daemon's status, its node's labels, the consumer pods on its node,
//! the time) and what it remembers to the actions it should take.
//!
//! No I/O happens here, so every rule is a table-driven unit test: the
//! [`kube_io`](super::kube_io) layer fetches the observation and carries
//! out the [`Action`]s, and the [`run`](super::run) loop feeds outcomes
//! (an eviction refused by a PodDisruptionBudget, say) back into the
//! [`Memory`].
//!
//! The rules:
//!
//! - **Labels follow the streams exactly.** The node carries
//!   `stream.camux.io/<stream>=ready` for every stream that publishes now
//!   (or stands by to take over from the other daemon pod of a rolling
//!   update, which publishes it) and no other label under
//!   `stream.camux.io/`: missing ones are applied, wrong or stale ones
//!   removed, whoever set them.
//! - **Eviction waits for a grace period.** A stream counts as down from
//!   the first observation that it is not up; its consumers on this node
//!   (pods labelled `camux.io/consumes=<stream>`) are evicted once it has
//!   been down for [`Policy::grace`]. A stream that flaps does not reset
//!   the clock: only [`Policy::settle`] of continuous health does, so a
//!   camera that comes back for a second every ten still moves its
//!   consumers away.
//! - **A refused eviction is retried with backoff.** A 429 (the
//!   PodDisruptionBudget allows no disruption now) or any other failure
//!   delays that pod's next attempt exponentially, from
//!   [`Policy::retry_base`] up to [`Policy::retry_max`].
//! - **Ignorance changes nothing.** While the daemon's status cannot be
//!   read, no label is touched and no pod evicted, and the time does not
//!   count toward any grace period.
//! - Pods on other nodes, pods already terminating and consumers of
//!   streams that are up are left alone. A consumer of a stream the daemon
//!   does not have counts as a consumer of a stream that is down.
//!
//! ```
//! use camux::reconciler::decide::*;
//! use std::time::Duration;
//!
//! let policy = Policy::default();
//! let daemon = DaemonView::Known(vec![StreamView::new("cam0", "publishing")]);
//! let obs = Observed {
//!     node: "edge-1".into(),
//!     daemon,
//!     node_labels: Some(Default::default()),
//!     pods: Some(vec![]),
//! };
//! let d = decide(&obs, &Memory::default(), &policy, Duration::ZERO);
//! assert_eq!(d.actions, vec![Action::ApplyLabels {
//!     labels: [("stream.camux.io/cam0".to_string(), "ready".to_string())].into(),
//!     added: vec!["cam0".into()],
//!     removed: vec![],
//! }]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The prefix of the node labels the reconciler owns.
pub const LABEL_PREFIX: &str = "stream.camux.io/";
/// The value of a stream's node label while it is up.
pub const READY: &str = "ready";
/// The pod label by which a consumer declares the stream it reads.
pub const CONSUMES_LABEL: &str = "camux.io/consumes";

/// The node label key of `stream`.
///
/// ```
/// assert_eq!(camux::reconciler::decide::label_key("cam0"), "stream.camux.io/cam0");
/// ```
pub fn label_key(stream: &str) -> String {
    format!("{LABEL_PREFIX}{stream}")
}

/// Whether `s` may be the name part of a label key or a label value:
/// 1 to 63 characters of `A-Z a-z 0-9 - _ .`, starting and ending with a
/// letter or digit. Daemon stream names allow a little more (a trailing
/// `-`, say); such a stream gets no label and the reconciler says why.
///
/// ```
/// use camux::reconciler::decide::valid_label_name;
/// assert!(valid_label_name("cam0"));
/// assert!(valid_label_name("front-door.v2"));
/// assert!(!valid_label_name("cam-"));
/// assert!(!valid_label_name(""));
/// ```
pub fn valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The timing rules of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a stream must be down before its consumers are evicted.
    pub grace: Duration,
    /// How long a stream must be up without a break before an earlier
    /// outage is forgotten (so a flapping stream still counts as down).
    pub settle: Duration,
    /// The delay before retrying a refused or failed eviction; it doubles
    /// with each further failure of the same pod.
    pub retry_base: Duration,
    /// The longest delay between eviction attempts of one pod.
    pub retry_max: Duration,
}

impl Default for Policy {
    /// Grace 30 s, settle 10 s, retries from 5 s doubling up to 60 s.
    fn default() -> Self {
        Policy {
            grace: Duration::from_secs(30),
            settle: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The delay before the next attempt after `failures` failed ones.
    ///
    /// ```
    /// use camux::reconciler::decide::Policy;
    /// use std::time::Duration;
    /// let p = Policy::default();
    /// assert_eq!(p.retry_after(1), Duration::from_secs(5));
    /// assert_eq!(p.retry_after(2), Duration::from_secs(10));
    /// assert_eq!(p.retry_after(20), Duration::from_secs(60));
    /// ```
    pub fn retry_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.retry_base
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }
}

/// One stream as the daemon's `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamView {
    /// Stream name.
    pub name: String,
    /// The daemon's state word (`publishing`, `standby`, `retrying`, ...).
    pub state: String,
}

impl StreamView {
    /// A stream in `state`.
    pub fn new(name: &str, state: &str) -> StreamView {
        StreamView {
            name: name.into(),
            state: state.into(),
        }
    }

    /// Up: it publishes, or stands by while the other daemon pod of a
    /// rolling update publishes it (both pods' reconcilers then agree on
    /// the labels). Starting, stalled, retrying and stopped are down.
    pub fn is_up(&self) -> bool {
        matches!(self.state.as_str(), "publishing" | "standby")
    }
}

/// What the reconciler knows of its daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonView {
    /// `/status` could not be read or made no sense; why.
    Unknown(String),
    /// Every stream the daemon has, with its state.
    Known(Vec<StreamView>),
}

/// A pod on (or, if the API returned it anyway, off) the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID: an eviction is made with it as a precondition, so a pod of the
    /// same name made later is not evicted by mistake.
    pub uid: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// Its `camux.io/consumes` label.
    pub consumes: Option<String>,
    /// Whether it has a deletion timestamp.
    pub terminating: bool,
    /// The UID of its controlling owner (a DaemonSet for the daemon's own
    /// pods), for the shutdown rule.
    pub controller_uid: Option<String>,
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The node the reconciler runs on.
    pub node: String,
    /// The daemon's streams, or why they are unknown.
    pub daemon: DaemonView,
    /// The node's labels, or `None` when the node could not be read.
    pub node_labels: Option<BTreeMap<String, String>>,
    /// The pods on the node that declare a stream they consume, or `None`
    /// when they could not be listed.
    pub pods: Option<Vec<PodView>>,
}

/// A stream's outage as the reconciler saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamMemory {
    /// When it was first seen down in the current outage.
    pub down_since: Option<Duration>,
    /// When it was first seen up in the current healthy run.
    pub up_since: Option<Duration>,
}

/// A pod's eviction attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionMemory {
    /// Attempts that failed (refused or errored).
    pub failures: u32,
    /// No attempt before this time.
    pub next_at: Duration,
    /// The API accepted an eviction: the pod is on its way out.
    pub accepted: bool,
}

/// What the reconciler carries from one decision to the next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    /// Per stream (also for consumed streams the daemon lacks).
    pub streams: BTreeMap<String, StreamMemory>,
    /// Per pod UID.
    pub evictions: BTreeMap<String, EvictionMemory>,
    /// When the daemon's status became unknown, if it is now.
    pub unknown_since: Option<Duration>,
}

/// How an eviction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictOutcome {
    /// Accepted (201): the pod will terminate.
    Evicted,
    /// The pod is gone already (404) or is a different pod now (409 on
    /// the UID precondition): nothing left to do.
    Gone,
    /// Refused with 429: a PodDisruptionBudget allows no disruption now.
    Refused(String),
    /// Any other failure.
    Failed(String),
}

impl Memory {
    /// Notes how the eviction of the pod with `uid` went at `now`.
    ///
    /// ```
    /// use camux::reconciler::decide::*;
    /// use std::time::Duration;
    /// let p = Policy::default();
    /// let mut m = Memory::default();
    /// m.record_eviction("u1", &EvictOutcome::Refused("pdb".into()), Duration::from_secs(40), &p);
    /// assert_eq!(m.evictions["u1"].next_at, Duration::from_secs(45));
    /// ```
    pub fn record_eviction(
        &mut self,
        uid: &str,
        outcome: &EvictOutcome,
        now: Duration,
        p: &Policy,
    ) {
        let e = self
            .evictions
            .entry(uid.to_string())
            .or_insert(EvictionMemory {
                failures: 0,
                next_at: now,
                accepted: false,
            });
        match outcome {
            EvictOutcome::Evicted | EvictOutcome::Gone => e.accepted = true,
            EvictOutcome::Refused(_) | EvictOutcome::Failed(_) => {
                e.failures = e.failures.saturating_add(1);
                e.next_at = now + p.retry_after(e.failures);
            }
        }
    }
}

/// A pod to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (the eviction's precondition).
    pub uid: String,
}

/// What the reconciler should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Server-side apply of exactly these labels with the reconciler's
    /// field manager (so labels it applied before and omits now go away,
    /// and nobody else's labels are touched). `added` and `removed` name
    /// the streams whose label changes, for the Event and the log.
    ApplyLabels {
        /// Every label the reconciler wants on the node.
        labels: BTreeMap<String, String>,
        /// Streams whose label appears.
        added: Vec<String>,
        /// Streams whose label goes.
        removed: Vec<String>,
    },
    /// Remove these labels under `stream.camux.io/` that someone else set
    /// (a merge patch with `null`s): the apply cannot remove labels it does
    /// not own.
    RemoveLabels {
        /// Full label keys.
        keys: Vec<String>,
    },
    /// Evict a consumer of a stream that has been down past the grace.
    Evict {
        /// The pod.
        pod: PodRef,
        /// The stream it consumes.
        stream: String,
        /// How long the stream has been down.
        down_for: Duration,
    },
}

/// Something worth a log line that is not an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The daemon's status is unknown: nothing was changed.
    DaemonUnknown {
        /// Why.
        reason: String,
        /// For how long.
        for_: Duration,
    },
    /// The node could not be read: labels were not checked.
    NodeUnknown,
    /// The pods could not be listed: no eviction was considered.
    PodsUnknown,
    /// A stream whose name cannot be a label key.
    UnlabellableStream(String),
    /// A consumer waits for its next eviction attempt.
    EvictionBackoff {
        /// The pod.
        pod: PodRef,
        /// Time left.
        wait: Duration,
    },
}

/// The result of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// What to remember for the next decision.
    pub memory: Memory,
    /// What to say.
    pub notes: Vec<Note>,
    /// Streams up now (label-worthy ones), for metrics.
    pub up: BTreeSet<String>,
}

/// Decides what to do about `obs` at `now` (a monotonic clock reading),
/// given what was remembered from before.
pub fn decide(obs: &Observed, mem: &Memory, policy: &Policy, now: Duration) -> Decision {
    let mut memory = mem.clone();
    let mut notes = Vec::new();
    let mut actions = Vec::new();

    let streams = match &obs.daemon {
        DaemonView::Unknown(reason) => {
            // Fail safe: act on nothing, and keep every clock where it is
            // (the unknown time is not counted as down time either way).
            let since = *memory.unknown_since.get_or_insert(now);
            notes.push(Note::DaemonUnknown {
                reason: reason.clone(),
                for_: now.saturating_sub(since),
            });
            return Decision {
                actions,
                memory,
                notes,
                up: BTreeSet::new(),
            };
        }
        DaemonView::Known(streams) => streams,
    };
    memory.unknown_since = None;

    let up: BTreeSet<String> = streams
        .iter()
        .filter(|s| s.is_up())
        .map(|s| s.name.clone())
        .collect();

    // Every stream worth a clock: the daemon's, and those consumers on
    // this node declare (a consumed stream the daemon lacks is down).
    let consumers: Vec<&PodView> = obs
        .pods
        .iter()
        .flatten()
        .filter(|p| p.node.as_deref() == Some(obs.node.as_str()))
        .collect();
    let mut names: BTreeSet<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    names.extend(consumers.iter().filter_map(|p| p.consumes.as_deref()));
    memory
        .streams
        .retain(|name, _| names.contains(name.as_str()));
    for name in &names {
        let m = memory.streams.entry(name.to_string()).or_default();
        if up.contains(*name) {
            let since = *m.up_since.get_or_insert(now);
            if now.saturating_sub(since) >= policy.settle {
                m.down_since = None;
            }
        } else {
            m.up_since = None;
            m.down_since.get_or_insert(now);
        }
    }

    // Labels.
    let mut desired = BTreeMap::new();
    for name in &up {
        if valid_label_name(name) {
            desired.insert(label_key(name), READY.to_string());
        } else {
            notes.push(Note::UnlabellableStream(name.clone()));
        }
    }
    match &obs.node_labels {
        None => notes.push(Note::NodeUnknown),
        Some(current) => {
            let ours: BTreeMap<&String, &String> = current
                .iter()
                .filter(|(k, _)| k.starts_with(LABEL_PREFIX))
                .collect();
            let stream_of = |k: &str| k[LABEL_PREFIX.len()..].to_string();
            let added: Vec<String> = desired
                .iter()
                .filter(|(k, v)| ours.get(k) != Some(v))
                .map(|(k, _)| stream_of(k))
                .collect();
            let stale: Vec<String> = ours
                .keys()
                .filter(|k| !desired.contains_key(k.as_str()))
                .map(|k| k.to_string())
                .collect();
            if !added.is_empty() || !stale.is_empty() {
                actions.push(Action::ApplyLabels {
                    labels: desired.clone(),
                    added,
                    removed: stale.iter().map(|k| stream_of(k)).collect(),
                });
            }
            if !stale.is_empty() {
                actions.push(Action::RemoveLabels { keys: stale });
            }
        }
    }

    // Evictions.
    match &obs.pods {
        None => notes.push(Note::PodsUnknown),
        Some(_) => {
            let present: BTreeSet<&str> = consumers.iter().map(|p| p.uid.as_str()).collect();
            memory
                .evictions
                .retain(|uid, _| present.contains(uid.as_str()));
            for pod in consumers.iter().filter(|p| !p.terminating) {
                let Some(stream) = pod.consumes.as_deref() else {
                    continue;
                };
                if up.contains(stream) {
                    continue;
                }
                let Some(down_since) = memory.streams.get(stream).and_then(|m| m.down_since) else {
                    continue;
                };
                let down_for = now.saturating_sub(down_since);
                if down_for < policy.grace {
                    continue;
                }
                let pod_ref = PodRef {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                };
                match memory.evictions.get(&pod.uid) {
                    Some(e) if e.accepted => continue,
                    Some(e) if e.next_at > now => {
                        notes.push(Note::EvictionBackoff {
                            pod: pod_ref,
                            wait: e.next_at - now,
                        });
                        continue;
                    }
                    _ => {}
                }
                actions.push(Action::Evict {
                    pod: pod_ref,
                    stream: stream.to_string(),
                    down_for,
                });
            }
        }
    }

    Decision {
        actions,
        memory,
        notes,
        up,
    }
}

/// What to do on SIGTERM, given the reconciler's own pod, the pods on its
/// node and the node's labels.
///
/// The rule: **keep the labels if another pod of the same DaemonSet runs
/// on this node** (a rolling update's successor, which will keep them in
/// step itself: both reconcilers use the same field manager); **remove
/// them otherwise** (the DaemonSet was deleted, the node lost its
/// `camux.io/camera=true` label, or the pod was deleted by hand — then the
/// DaemonSet makes a new pod, whose reconciler restores what is true).
/// When the reconciler cannot tell (`own_controller` or `pods` unknown),
/// it leaves the labels: a wrong `ready` is repaired by the next
/// reconciler on the node, a wrong removal would stop scheduling there.
///
/// ```
/// use camux::reconciler::decide::*;
/// let labels = [("stream.camux.io/cam0".to_string(), "ready".to_string())].into();
/// // Alone on the node: the labels go.
/// let a = shutdown_actions("camux-abc", Some("ds-uid"), Some(&[][..]), Some(&labels));
/// assert!(matches!(&a[0], Action::ApplyLabels { labels, .. } if labels.is_empty()));
/// ```
pub fn shutdown_actions(
    own_pod: &str,
    own_controller: Option<&str>,
    pods: Option<&[PodView]>,
    node_labels: Option<&BTreeMap<String, String>>,
) -> Vec<Action> {
    let (Some(controller), Some(pods)) = (own_controller, pods) else {
        return Vec::new();
    };
    let successor = pods.iter().any(|p| {
        p.name != own_pod && !p.terminating && p.controller_uid.as_deref() == Some(controller)
    });
    if successor {
        return Vec::new();
    }
    let ours: Vec<String> = node_labels
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(LABEL_PREFIX))
        .cloned()
        .collect();
    let removed = ours
        .iter()
        .map(|k| k[LABEL_PREFIX.len()..].to_string())
        .collect();
    let mut actions = vec![Action::ApplyLabels {
        labels: BTreeMap::new(),
        added: Vec::new(),
        removed,
    }];
    if !ours.is_empty() {
        actions.push(Action::RemoveLabels { keys: ours });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "edge-1";

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn policy() -> Policy {
        Policy {
            grace: s(30),
            settle: s(10),
            retry_base: s(5),
            retry_max: s(60),
        }
    }

    fn daemon(streams: &[(&str, &str)]) -> DaemonView {
        DaemonView::Known(
            streams
                .iter()
                .map(|(n, st)| StreamView::new(n, st))
                .collect(),
        )
    }

    fn pod(name: &str, node: &str, consumes: Option<&str>) -> PodView {
        PodView {
            namespace: "vision".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node: Some(node.into()),
            consumes: consumes.map(Into::into),
            terminating: false,
            controller_uid: None,
        }
    }

    fn labels(streams: &[&str]) -> BTreeMap<String, String> {
        streams
            .iter()
            .map(|s| (label_key(s), READY.to_string()))
            .collect()
    }

    fn obs(
        d: DaemonView,
        node_labels: Option<BTreeMap<String, String>>,
        pods: Vec<PodView>,
    ) -> Observed {
        Observed {
            node: NODE.into(),
            daemon: d,
            node_labels,
            pods: Some(pods),
        }
    }

    fn evicted(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Evict { pod, .. } => Some(pod.name.clone()),
                _ => None,
            })
            .collect()
    }

    fn label_actions(actions: &[Action]) -> Vec<&Action> {
        actions
            .iter()
            .filter(|a| !matches!(a, Action::Evict { .. }))
            .collect()
    }

    /// One step of a scenario: at time `at`, the daemon says `daemon`; the
    /// node carries `labels` (None: unreadable); expect these evictions and
    /// whether a label change is due.
    struct Step {
        at: u64,
        daemon: DaemonView,
        evict: &'static [&'static str],
        relabel: bool,
    }

    /// Runs a scenario in which the node's labels always end up as the
    /// reconciler applied them (the API server accepted every patch), and
    /// every eviction is accepted.
    fn scenario(name: &str, pods: Vec<PodView>, steps: Vec<Step>) {
        let p = policy();
        let mut mem = Memory::default();
        let mut node_labels = BTreeMap::new();
        let mut pods = pods;
        for (i, step) in steps.into_iter().enumerate() {
            let o = obs(step.daemon, Some(node_labels.clone()), pods.clone());
            let d = decide(&o, &mem, &p, s(step.at));
            assert_eq!(
                evicted(&d.actions),
                step.evict,
                "{name}, step {i} (t={}): evictions; actions {:?}",
                step.at,
                d.actions
            );
            assert_eq!(
                !label_actions(&d.actions).is_empty(),
                step.relabel,
                "{name}, step {i} (t={}): label change; actions {:?}",
                step.at,
                d.actions
            );
            mem = d.memory;
            for a in &d.actions {
                match a {
                    Action::ApplyLabels { labels, .. } => node_labels = labels.clone(),
                    Action::RemoveLabels { keys } => keys.iter().for_each(|k| {
                        node_labels.remove(k);
                    }),
                    Action::Evict { pod, .. } => {
                        mem.record_eviction(&pod.uid, &EvictOutcome::Evicted, s(step.at), &p);
                        pods.iter_mut()
                            .filter(|q| q.uid == pod.uid)
                            .for_each(|q| q.terminating = true);
                    }
                }
            }
        }
    }

    fn step(at: u64, daemon: DaemonView, evict: &'static [&'static str], relabel: bool) -> Step {
        Step {
            at,
            daemon,
            evict,
            relabel,
        }
    }

    #[test]
    fn scenarios() {
        let up = || daemon(&[("cam0", "publishing"), ("cam1", "publishing")]);
        let cam0_down = || daemon(&[("cam0", "retrying"), ("cam1", "publishing")]);
        let consumers = || {
            vec![
                pod("motion", NODE, Some("cam0")),
                pod("classifier", NODE, Some("cam0")),
                pod("recorder", NODE, Some("cam1")),
                pod("elsewhere", "edge-2", Some("cam0")),
                pod("plain", NODE, None),
            ]
        };
        scenario(
            "stream up: label once, nobody evicted",
            consumers(),
            vec![
                step(0, up(), &[], true),
                step(5, up(), &[], false),
                step(100, up(), &[], false),
            ],
        );
        scenario(
            "stream down: label goes at once, its consumers go after the grace, others stay",
            consumers(),
            vec![
                step(0, up(), &[], true),
                step(10, cam0_down(), &[], true),
                step(39, cam0_down(), &[], false),
                step(40, cam0_down(), &["motion", "classifier"], false),
                step(45, cam0_down(), &[], false),
            ],
        );
        scenario(
            "down, then back within the grace: nobody evicted, label returns",
            consumers(),
            vec![
                step(0, up(), &[], true),
                step(10, cam0_down(), &[], true),
                step(30, up(), &[], true),
                step(45, up(), &[], false),
                step(60, up(), &[], false),
            ],
        );
        scenario(
            "flapping: short ups do not reset the outage clock",
            consumers(),
            vec![
                step(0, cam0_down(), &[], true),
                step(10, up(), &[], true),
                step(12, cam0_down(), &[], true),
                step(20, up(), &[], true),
                step(22, cam0_down(), &[], true),
                step(29, cam0_down(), &[], false),
                step(30, cam0_down(), &["motion", "classifier"], false),
            ],
        );
        scenario(
            "settled: an up longer than settle forgets the earlier outage",
            consumers(),
            vec![
                step(0, cam0_down(), &[], true),
                step(20, up(), &[], true),
                step(31, up(), &[], false),
                step(35, cam0_down(), &[], true),
                step(64, cam0_down(), &[], false),
                step(65, cam0_down(), &["motion", "classifier"], false),
            ],
        );
        scenario(
            "standby counts as up (rolling update), starting and stalled as down",
            consumers(),
            vec![
                step(
                    0,
                    daemon(&[("cam0", "standby"), ("cam1", "starting")]),
                    &[],
                    true,
                ),
                step(
                    30,
                    daemon(&[("cam0", "standby"), ("cam1", "stalled")]),
                    &["recorder"],
                    false,
                ),
            ],
        );
        scenario(
            "a consumed stream the daemon does not have is down",
            vec![pod("typo", NODE, Some("cam9"))],
            vec![
                step(0, up(), &[], true),
                step(29, up(), &[], false),
                step(30, up(), &["typo"], false),
            ],
        );
    }

    #[test]
    fn unknown_daemon_changes_nothing_and_stops_the_clock() {
        let p = policy();
        let pods = vec![pod("motion", NODE, Some("cam0"))];
        let down = daemon(&[("cam0", "retrying")]);
        let d0 = decide(
            &obs(down.clone(), Some(labels(&["cam0"])), pods.clone()),
            &Memory::default(),
            &p,
            s(0),
        );
        assert!(
            matches!(d0.actions.as_slice(), [Action::ApplyLabels { removed, .. }, Action::RemoveLabels { .. }] if removed == &["cam0"])
        );
        // Unknown from 10 s to 100 s: no label touched (the stale label
        // stays), no eviction, though the stream was last seen down.
        let unknown = DaemonView::Unknown("connection refused".into());
        let mut mem = d0.memory;
        for t in [10, 50, 100] {
            let d = decide(
                &obs(
                    unknown.clone(),
                    Some(labels(&["cam0", "cam1"])),
                    pods.clone(),
                ),
                &mem,
                &p,
                s(t),
            );
            assert!(d.actions.is_empty(), "t={t}: {:?}", d.actions);
            assert!(
                d.notes
                    .iter()
                    .any(|n| matches!(n, Note::DaemonUnknown { for_, .. } if *for_ == s(t - 10))),
                "{:?}",
                d.notes
            );
            mem = d.memory;
        }
        // Known again: the outage that began at 0 is past the grace.
        let d = decide(&obs(down, Some(BTreeMap::new()), pods), &mem, &p, s(101));
        assert_eq!(evicted(&d.actions), ["motion"]);
        assert_eq!(d.memory.unknown_since, None);
    }

    #[test]
    fn label_drift_is_repaired() {
        let p = policy();
        let d = daemon(&[("cam0", "publishing"), ("cam1", "retrying")]);
        let cases: Vec<(&str, BTreeMap<String, String>, Vec<Action>)> = vec![
            ("in step: nothing", labels(&["cam0"]), vec![]),
            (
                "missing",
                BTreeMap::new(),
                vec![Action::ApplyLabels {
                    labels: labels(&["cam0"]),
                    added: vec!["cam0".into()],
                    removed: vec![],
                }],
            ),
            (
                "wrong value",
                [(label_key("cam0"), "down".to_string())].into(),
                vec![Action::ApplyLabels {
                    labels: labels(&["cam0"]),
                    added: vec!["cam0".into()],
                    removed: vec![],
                }],
            ),
            (
                "stale label of a down stream and of a stream nobody has",
                labels(&["cam0", "cam1", "old"]),
                vec![
                    Action::ApplyLabels {
                        labels: labels(&["cam0"]),
                        added: vec![],
                        removed: vec!["cam1".into(), "old".into()],
                    },
                    Action::RemoveLabels {
                        keys: vec![label_key("cam1"), label_key("old")],
                    },
                ],
            ),
            (
                "other labels are not ours",
                [
                    (label_key("cam0"), READY.to_string()),
                    ("camux.io/camera".to_string(), "true".to_string()),
                    ("kubernetes.io/hostname".to_string(), NODE.to_string()),
                    ("xstream.camux.io/cam1".to_string(), "ready".to_string()),
                ]
                .into(),
                vec![],
            ),
        ];
        for (name, current, want) in cases {
            let got = decide(
                &obs(d.clone(), Some(current), vec![]),
                &Memory::default(),
                &p,
                s(0),
            );
            assert_eq!(got.actions, want, "{name}");
        }
        // An unreadable node: no label action, and it says so.
        let got = decide(&obs(d.clone(), None, vec![]), &Memory::default(), &p, s(0));
        assert!(got.actions.is_empty());
        assert!(got.notes.contains(&Note::NodeUnknown));
    }

    #[test]
    fn streams_that_cannot_be_labels_are_named() {
        let d = decide(
            &obs(
                daemon(&[("cam-", "publishing"), ("ok", "publishing")]),
                Some(BTreeMap::new()),
                vec![],
            ),
            &Memory::default(),
            &policy(),
            s(0),
        );
        assert!(d.notes.contains(&Note::UnlabellableStream("cam-".into())));
        assert!(
            matches!(&d.actions[0], Action::ApplyLabels { labels, .. } if *labels == super::tests::labels(&["ok"]))
        );
    }

    #[test]
    fn refused_eviction_is_retried_with_backoff() {
        let p = policy();
        let pods = vec![pod("motion", NODE, Some("cam0"))];
        let down = daemon(&[("cam0", "retrying")]);
        let mut mem = decide(
            &obs(down.clone(), Some(BTreeMap::new()), pods.clone()),
            &Memory::default(),
            &p,
            s(0),
        )
        .memory;
        // (time, evict expected, outcome if evicted)
        let plan: &[(u64, bool, Option<EvictOutcome>)] = &[
            (
                30,
                true,
                Some(EvictOutcome::Refused(
                    "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                )),
            ),
            (31, false, None),
            (34, false, None),
            (35, true, Some(EvictOutcome::Failed("503".into()))),
            (44, false, None),
            (45, true, Some(EvictOutcome::Refused("pdb".into()))),
            (64, false, None),
            (65, true, Some(EvictOutcome::Evicted)),
            (66, false, None),
            (200, false, None),
        ];
        for (t, expect, outcome) in plan {
            let d = decide(
                &obs(down.clone(), Some(BTreeMap::new()), pods.clone()),
                &mem,
                &p,
                s(*t),
            );
            assert_eq!(
                !evicted(&d.actions).is_empty(),
                *expect,
                "t={t}: {:?} {:?}",
                d.actions,
                d.notes
            );
            if !expect && *t < 65 {
                assert!(
                    d.notes
                        .iter()
                        .any(|n| matches!(n, Note::EvictionBackoff { .. })),
                    "t={t}: {:?}",
                    d.notes
                );
            }
            mem = d.memory;
            if let Some(o) = outcome {
                mem.record_eviction("uid-motion", o, s(*t), &p);
            }
        }
        // The pod is gone from the list: its memory is dropped.
        let d = decide(&obs(down, Some(BTreeMap::new()), vec![]), &mem, &p, s(300));
        assert!(d.memory.evictions.is_empty());
    }

    #[test]
    fn pods_on_other_nodes_terminating_pods_and_unknown_pods_are_left_alone() {
        let p = policy();
        let down = daemon(&[("cam0", "retrying")]);
        let mut terminating = pod("old", NODE, Some("cam0"));
        terminating.terminating = true;
        let pods = vec![
            pod("away", "edge-2", Some("cam0")),
            terminating,
            pod("unscheduled", NODE, Some("cam0")),
        ];
        let mut pods_nodeless = pods.clone();
        pods_nodeless[2].node = None;
        let mem = decide(
            &obs(down.clone(), Some(BTreeMap::new()), pods_nodeless.clone()),
            &Memory::default(),
            &p,
            s(0),
        )
        .memory;
        let d = decide(
            &obs(down.clone(), Some(BTreeMap::new()), pods_nodeless),
            &mem,
            &p,
            s(100),
        );
        assert!(evicted(&d.actions).is_empty(), "{:?}", d.actions);
        // Pods unknown (the list failed): no eviction, and a note.
        let mut o = obs(down, Some(BTreeMap::new()), vec![]);
        o.pods = None;
        let d = decide(&o, &mem, &p, s(100));
        assert!(d.actions.is_empty());
        assert!(d.notes.contains(&Note::PodsUnknown));
        assert!(
            d.memory.streams.contains_key("cam0"),
            "the stream's clock is kept"
        );
    }

    #[test]
    fn shutdown_keeps_labels_for_a_successor_only() {
        let ls = labels(&["cam0"]);
        let ds = |name: &str, terminating: bool| PodView {
            controller_uid: Some("ds-1".into()),
            terminating,
            ..pod(name, NODE, None)
        };
        let me = ds("camux-old", true);
        // A successor of the same DaemonSet: keep.
        let pods = [me.clone(), ds("camux-new", false)];
        assert!(shutdown_actions("camux-old", Some("ds-1"), Some(&pods[..]), Some(&ls)).is_empty());
        // Only pods of another DaemonSet, or terminating ones: remove.
        let other = PodView {
            controller_uid: Some("ds-2".into()),
            ..pod("other", NODE, None)
        };
        for pods in [
            vec![me.clone()],
            vec![me.clone(), other],
            vec![me.clone(), ds("camux-dying", true)],
        ] {
            assert_eq!(
                shutdown_actions("camux-old", Some("ds-1"), Some(&pods[..]), Some(&ls)),
                vec![
                    Action::ApplyLabels {
                        labels: BTreeMap::new(),
                        added: vec![],
                        removed: vec!["cam0".into()]
                    },
                    Action::RemoveLabels {
                        keys: vec![label_key("cam0")]
                    },
                ]
            );
        }
        // Cannot tell: keep.
        assert!(shutdown_actions("camux-old", None, Some(&pods[..]), Some(&ls)).is_empty());
        assert!(shutdown_actions("camux-old", Some("ds-1"), None, Some(&ls)).is_empty());
    }

    #[test]
    fn retry_delay_doubles_to_the_cap() {
        let p = policy();
        let got: Vec<u64> = (1..=6).map(|n| p.retry_after(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 60, 60]);
        assert_eq!(p.retry_after(u32::MAX), s(60));
    }
}
