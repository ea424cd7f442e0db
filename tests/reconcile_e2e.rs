//! End to end on one machine, without a cluster: the real `camux daemon`
//! with synthetic streams, the real `camux reconcile` pointed (by a
//! kubeconfig) at a mock Kubernetes API server over real HTTP. A stream
//! stops: the reconciler removes its label at once and evicts its consumer
//! after the grace period, leaving the other stream's consumer and pods on
//! other nodes alone. The stream comes back: the label returns. The daemon
//! dies: nothing changes. SIGTERM: labels stay for a successor pod, go
//! without one.
#![cfg(feature = "reconcile")]

mod util;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use util::{Dir, Proc, Watchdog};

const NODE: &str = "edge-1";
const PREFIX: &str = "stream.camux.io/";

/// What the mock API server holds and saw.
#[derive(Default)]
struct World {
    labels: BTreeMap<String, String>,
    /// The label keys the field manager `camux-reconciler` owns.
    owned: std::collections::BTreeSet<String>,
    pods: Vec<Value>,
    /// Evictions still to refuse with 429, as a PodDisruptionBudget would.
    refuse: u32,
    /// (method, path, body) of every request, in order.
    log: Vec<(String, String, Value)>,
}

#[derive(Clone, Default)]
struct Mock {
    world: Arc<(Mutex<World>, Condvar)>,
}

impl Mock {
    fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let (m, cv) = &*self.world;
        let out = f(&mut m.lock().unwrap());
        cv.notify_all();
        out
    }

    /// Waits (on the condition variable, woken by every request) until
    /// `cond` holds; panics naming `what` after 60 s.
    fn wait_until(&self, what: &str, cond: impl Fn(&World) -> bool) {
        let (m, cv) = &*self.world;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut w = m.lock().unwrap();
        while !cond(&w) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "never saw {what}; labels {:?}; last requests {:#?}",
                w.labels,
                &w.log[w.log.len().saturating_sub(8)..]
            );
            w = cv.wait_timeout(w, left).unwrap().0;
        }
    }

    fn ready(&self) -> Vec<String> {
        self.with(|w| {
            w.labels
                .iter()
                .filter(|(k, v)| k.starts_with(PREFIX) && *v == "ready")
                .map(|(k, _)| k[PREFIX.len()..].to_string())
                .collect()
        })
    }
}

fn ready_is(w: &World, streams: &[&str]) -> bool {
    let got: Vec<&str> = w
        .labels
        .keys()
        .filter_map(|k| k.strip_prefix(PREFIX))
        .collect();
    got == streams
}

fn evictions(w: &World) -> Vec<String> {
    w.log
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/eviction"))
        .map(|(_, p, _)| p.clone())
        .collect()
}

fn pod(
    ns: &str,
    name: &str,
    node: &str,
    consumes: Option<&str>,
    controller: Option<&str>,
) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": {}},
        "spec": {"nodeName": node, "containers": []},
    });
    if let Some(s) = consumes {
        p["metadata"]["labels"]["camux.io/consumes"] = json!(s);
    }
    if let Some(c) = controller {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "camux", "uid": c, "controller": true}]);
    }
    p
}

fn node_json(w: &World) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": w.labels}})
}

fn status(code: u16, msg: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": if code < 300 { "Success" } else { "Failure" }, "code": code, "message": msg});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn query_param(q: &str, key: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%3D", "=").replace("%2F", "/"))
    })
}

/// The API server: nodes, pods, evictions and events, as much as the
/// reconciler uses, with server-side apply's ownership of label keys.
async fn api(State(mock): State<Mock>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    mock.with(|w| {
        w.log.push((method.to_string(), path.clone(), body.clone()));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.clone(), parts.as_slice()) {
            (Method::GET, ["api", "v1", "nodes", n]) if *n == NODE => {
                axum::Json(node_json(w)).into_response()
            }
            (Method::PATCH, ["api", "v1", "nodes", n]) if *n == NODE => {
                let labels = body["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if ct == "application/apply-patch+yaml" {
                    assert_eq!(
                        query_param(&query, "fieldManager").as_deref(),
                        Some("camux-reconciler")
                    );
                    assert_eq!(query_param(&query, "force").as_deref(), Some("true"));
                    // Server-side apply: the manager's keys it omits now go,
                    // keys others set stay.
                    let owned = std::mem::take(&mut w.owned);
                    for k in owned {
                        if !labels.contains_key(&k) {
                            w.labels.remove(&k);
                        }
                    }
                    for (k, v) in labels {
                        w.labels.insert(k.clone(), v.as_str().unwrap().to_string());
                        w.owned.insert(k);
                    }
                } else {
                    for (k, v) in labels {
                        match v.as_str() {
                            None => {
                                w.owned.remove(&k);
                                w.labels.remove(&k)
                            }
                            Some(v) => w.labels.insert(k, v.to_string()),
                        };
                    }
                }
                axum::Json(node_json(w)).into_response()
            }
            (Method::GET, ["api", "v1", "pods"]) => {
                let node = query_param(&query, "fieldSelector")
                    .and_then(|f| f.strip_prefix("spec.nodeName=").map(String::from));
                let label = query_param(&query, "labelSelector");
                let items: Vec<Value> = w
                    .pods
                    .iter()
                    .filter(|p| node.as_deref().is_none_or(|n| p["spec"]["nodeName"] == n))
                    .filter(|p| {
                        label
                            .as_deref()
                            .is_none_or(|l| p["metadata"]["labels"].get(l).is_some())
                    })
                    .cloned()
                    .collect();
                axum::Json(
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
                )
                .into_response()
            }
            (Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
                match w
                    .pods
                    .iter()
                    .find(|p| p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name)
                {
                    Some(p) => axum::Json(p.clone()).into_response(),
                    None => status(404, "not found"),
                }
            }
            (Method::POST, ["api", "v1", "namespaces", ns, "pods", name, "eviction"]) => {
                let i = w.pods.iter().position(|p| {
                    p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name
                });
                match i {
                    None => status(404, "not found"),
                    Some(i)
                        if body["deleteOptions"]["preconditions"]["uid"]
                            != w.pods[i]["metadata"]["uid"] =>
                    {
                        status(409, "uid precondition failed")
                    }
                    Some(_) if w.refuse > 0 => {
                        w.refuse -= 1;
                        status(
                            429,
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        )
                    }
                    Some(i) => {
                        w.pods.remove(i);
                        status(201, "")
                    }
                }
            }
            (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
                (StatusCode::CREATED, axum::Json(body.clone())).into_response()
            }
            _ => status(404, &format!("the mock has no {method} {path}")),
        }
    })
}

/// Starts the mock on a free port on its own thread; returns its address.
fn start_mock(mock: Mock) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(api).with_state(mock);
            axum::serve(l, app).await.unwrap();
        });
    });
    addr
}

fn daemon_config(dir: &std::path::Path, cam1_alive: bool) -> String {
    let cam1 = if cam1_alive {
        "{ type: synthetic, width: 64, height: 48, fps: 30 }".to_string()
    } else {
        // The camera is gone: its device path no longer exists.
        format!(
            "{{ type: sensor, path: {}/unplugged, lines: true }}",
            dir.display()
        )
    };
    format!(
        "dir: {dir}\nstreams:\n- name: cam0\n  source: {{ type: synthetic, width: 64, height: 48, fps: 30 }}\n- name: cam1\n  source: {cam1}\n",
        dir = dir.display()
    )
}

/// The sum of `name`'s samples (a labelled family has none until its
/// first count); panics if the reconciler does not declare `name` at all.
fn metric(addr: &str, name: &str) -> f64 {
    let (code, body) = util::http_get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!("# TYPE {name} ")),
        "no {name} in {body}"
    );
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name}: not a plain value"),
        })
        .sum()
}

/// Polls the reconciler's /metrics (HTTP state can only be polled) until
/// `cond` holds.
fn wait_metric(addr: &str, what: &str, cond: impl Fn(&dyn Fn(&str) -> f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond(&|n| metric(addr, n)) {
        assert!(
            Instant::now() < deadline,
            "never saw {what}: {}",
            util::http_get(addr, "/metrics").1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reconciler(d: &Dir, kubeconfig: &std::path::Path, daemon: &str) -> (Proc, String) {
    let mut cmd = d.camux([
        "reconcile",
        "--daemon-url",
        &format!("http://{daemon}"),
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "100ms",
        "--grace",
        "2s",
        "--settle",
        "500ms",
        "--eviction-retry",
        "200ms",
        "--log-format",
        "text",
    ]);
    cmd.env("KUBECONFIG", kubeconfig)
        .env("NODE_NAME", NODE)
        .env("POD_NAME", "camux-old")
        .env("POD_NAMESPACE", "camux-system")
        .env_remove("KUBERNETES_SERVICE_HOST");
    let mut p = Proc::spawn("reconcile", cmd);
    let started = p.wait_event("started");
    assert_eq!(started["node"], NODE);
    let addr = started["listen"].as_str().unwrap().to_string();
    (p, addr)
}

#[test]
fn labels_follow_the_streams_and_consumers_of_a_dead_stream_move() {
    let dog = Watchdog::new("reconcile_e2e", Duration::from_secs(240));
    let d = Dir::new("reconcile");
    let mock = Mock::default();
    mock.with(|w| {
        w.labels.insert("camux.io/camera".into(), "true".into());
        w.labels
            .insert("kubernetes.io/hostname".into(), NODE.into());
        // Someone else's stale stream label: the reconciler owns the prefix.
        w.labels.insert(format!("{PREFIX}gone"), "ready".into());
        // The first eviction is refused: the budget allows no disruption yet.
        w.refuse = 1;
        w.pods = vec![
            pod("camux-system", "camux-old", NODE, None, Some("ds-1")),
            pod("vision", "motion-1", NODE, Some("cam1"), None),
            pod("vision", "classifier-1", NODE, Some("cam0"), None),
            pod("vision", "motion-2", "edge-2", Some("cam1"), None),
        ];
    });
    let api = start_mock(mock.clone());
    let kubeconfig = d.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{api}\nusers:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: test\ncurrent-context: mock\n"
        ),
    )
    .unwrap();

    dog.phase("daemon start");
    let cfg = d.path().join("daemon.yaml");
    std::fs::write(&cfg, daemon_config(d.path(), true)).unwrap();
    let mut daemon = Proc::spawn(
        "daemon",
        d.camux([
            "daemon",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ]),
    );
    let daemon_addr = daemon.wait_event("started")["listen"]
        .as_str()
        .unwrap()
        .to_string();

    dog.phase("labels for both streams");
    let (mut rec, rec_addr) = reconciler(&d, &kubeconfig, &daemon_addr);
    mock.wait_until("cam0 and cam1 labelled ready, the stale label gone", |w| {
        ready_is(w, &["cam0", "cam1"])
    });
    assert_eq!(
        mock.with(|w| w.labels.get("camux.io/camera").cloned()),
        Some("true".into()),
        "other labels untouched"
    );
    let (code, _) = util::http_get(&rec_addr, "/healthz");
    assert_eq!(code, 200);

    dog.phase("cam1 unplugged");
    std::fs::write(&cfg, daemon_config(d.path(), false)).unwrap();
    daemon.signal(Signal::SIGHUP);
    mock.wait_until("cam1's label removed", |w| ready_is(w, &["cam0"]));
    let evictions_at_removal = mock.with(|w| evictions(w).len());
    assert_eq!(
        evictions_at_removal, 0,
        "no eviction before the grace period"
    );
    mock.wait_until("motion-1 evicted after one refusal", |w| {
        evictions(w).len() >= 2
    });
    mock.wait_until("the eviction's Event", |w| {
        w.log
            .iter()
            .any(|(m, _, b)| m == "POST" && b["reason"] == "ConsumerEvicted")
    });
    let (evicted, note) = mock.with(|w| {
        let note = w
            .log
            .iter()
            .find(|(_, _, b)| b["reason"] == "ConsumerEvicted")
            .map(|(_, _, b)| b["note"].as_str().unwrap().to_string())
            .unwrap();
        (evictions(w), note)
    });
    assert_eq!(
        evicted, ["/api/v1/namespaces/vision/pods/motion-1/eviction"; 2],
        "only cam1's consumer on this node: refused once, then evicted"
    );
    // The Event says how long the stream was down: at least the grace.
    let secs: u64 = note
        .split(" for ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no down time in {note:?}"));
    assert!(secs >= 2, "evicted after {secs}s, grace is 2s: {note}");
    let remaining: Vec<String> = mock.with(|w| {
        w.pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    });
    assert_eq!(remaining, ["camux-old", "classifier-1", "motion-2"]);
    // (Counted once the Event is recorded, just after the mock saw it.)
    wait_metric(&rec_addr, "the eviction counted", |m| {
        m("camux_reconciler_evictions_total") >= 2.0
    });
    assert_eq!(metric(&rec_addr, "camux_reconciler_evictions_total"), 2.0);
    let (_, body) = util::http_get(&rec_addr, "/metrics");
    for line in [
        "camux_reconciler_evictions_total{result=\"evicted\"} 1",
        "camux_reconciler_evictions_total{result=\"refused\"} 1",
    ] {
        assert!(body.contains(line), "no {line:?} in {body}");
    }

    dog.phase("cam1 back");
    std::fs::write(&cfg, daemon_config(d.path(), true)).unwrap();
    daemon.signal(Signal::SIGHUP);
    mock.wait_until("cam1's label back", |w| ready_is(w, &["cam0", "cam1"]));

    dog.phase("daemon dies: nothing changes");
    daemon.kill();
    wait_metric(&rec_addr, "the daemon's status unknown", |m| {
        m("camux_reconciler_daemon_status_known") == 0.0
    });
    let before = metric(&rec_addr, "camux_reconciler_reconciles_total");
    let log_len = mock.with(|w| w.log.len());
    wait_metric(&rec_addr, "five decisions while unknown", |m| {
        m("camux_reconciler_reconciles_total") >= before + 5.0
    });
    assert_eq!(
        mock.ready(),
        ["cam0", "cam1"],
        "labels kept while the daemon's status is unknown"
    );
    assert_eq!(
        mock.with(|w| w.log.len()),
        log_len,
        "not even a read of the API while ignorant"
    );

    dog.phase("SIGTERM with a successor: labels stay");
    mock.with(|w| {
        w.pods
            .push(pod("camux-system", "camux-new", NODE, None, Some("ds-1")))
    });
    let (st, _) = rec.terminate();
    assert!(st.success(), "reconciler exit: {st:?}");
    assert_eq!(mock.ready(), ["cam0", "cam1"]);

    dog.phase("SIGTERM alone: labels go");
    mock.with(|w| w.pods.retain(|p| p["metadata"]["name"] != "camux-new"));
    let (mut rec2, rec2_addr) = reconciler(&d, &kubeconfig, &daemon_addr);
    wait_metric(&rec2_addr, "a decision", |m| {
        m("camux_reconciler_reconciles_total") >= 1.0
    });
    let (st, _) = rec2.terminate();
    assert!(st.success(), "reconciler exit: {st:?}");
    assert!(mock.ready().is_empty(), "labels left: {:?}", mock.ready());
    assert_eq!(
        mock.with(|w| w.labels.get("camux.io/camera").cloned()),
        Some("true".into())
    );
}
