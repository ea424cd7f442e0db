//! The Kubernetes manifests as the cluster gets them: `kubectl kustomize`
//! renders the base (k8s/) and every example (k8s/examples/*), and these
//! tests assert on the rendered objects the properties that must not
//! regress: who is privileged (the daemon container, nothing else), how
//! consumers read the rings (read-only, non-root, no capabilities), the
//! reconciler's least rights, the rolling-update settings, and a daemon
//! memory limit that holds the rings its ConfigMap asks for.
//!
//! Needs `kubectl` (its built-in kustomize). Schema validation of the same
//! objects is `.ci/k8s-check` (kubernetes-validate --strict).
#![cfg(feature = "daemon")]

use camux::daemon::config::{DaemonConfig, SourceConfig};
use camux::format::FrameLayout;
use camux::ring::Geometry;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const IMAGE: &str = "ghcr.io/camux/camux";
const RING_DIR: &str = "/run/camux";
const NAMESPACE: &str = "camux-system";
/// The page size the rings are laid out with on the nodes (x86-64 and
/// most arm64 kernels; a 64 KiB-page arm64 node needs more memory).
const NODE_PAGE_SIZE: u32 = 4096;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every kustomization the tests render: the base, k8s/base, and each
/// directory of k8s/examples with a kustomization.yaml.
fn build_dirs() -> Vec<String> {
    let mut dirs = vec!["k8s".to_string(), "k8s/base".to_string()];
    let mut examples: Vec<String> = std::fs::read_dir(root().join("k8s/examples"))
        .expect("k8s/examples")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .map(|p| format!("k8s/examples/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    examples.sort();
    dirs.extend(examples);
    dirs
}

/// `kubectl kustomize <dir>`, parsed: one JSON value per object.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `kubectl kustomize {dir}`: {e}. These tests need kubectl \
                 (its built-in kustomize renders k8s/); install it, e.g. from the \
                 Kubernetes apt repository, or put it on PATH"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let objects: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{dir}: {e}")))
        .filter(|v| !v.is_null())
        .collect();
    assert!(!objects.is_empty(), "{dir} renders no object");
    objects
}

/// Every build, rendered once for all tests.
fn builds() -> &'static BTreeMap<String, Vec<Value>> {
    static BUILDS: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    BUILDS.get_or_init(|| {
        build_dirs()
            .into_iter()
            .map(|d| (d.clone(), kustomize(&d)))
            .collect()
    })
}

fn build(dir: &str) -> &'static [Value] {
    builds()
        .get(dir)
        .unwrap_or_else(|| panic!("{dir} is not among the builds {:?}", builds().keys()))
}

/// Every object of every build, with the build it came from.
fn all_objects() -> impl Iterator<Item = (&'static str, &'static Value)> {
    builds()
        .iter()
        .flat_map(|(dir, objs)| objs.iter().map(move |o| (dir.as_str(), o)))
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn what(o: &Value) -> String {
    format!("{}/{}", kind(o), name(o))
}

fn find<'a>(objects: &'a [Value], kind_: &str, name_: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == kind_ && name(o) == name_)
        .unwrap_or_else(|| panic!("no {kind_}/{name_} rendered"))
}

/// The pod template's spec of a workload (or a Pod's spec).
fn pod_spec(o: &Value) -> Option<&Value> {
    match kind(o) {
        "Pod" => Some(&o["spec"]),
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" => {
            Some(&o["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&o["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

/// The pod template's labels of a workload.
fn pod_labels(o: &Value) -> &Value {
    match kind(o) {
        "Pod" => &o["metadata"]["labels"],
        "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        _ => &o["spec"]["template"]["metadata"]["labels"],
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Containers, init containers and ephemeral containers of a pod spec.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| array(&spec[k]).iter())
}

fn container<'a>(spec: &'a Value, name_: &str) -> &'a Value {
    containers(spec)
        .find(|c| c["name"] == name_)
        .unwrap_or_else(|| panic!("no container {name_}"))
}

/// A security setting as it applies to a container: the container's own,
/// else the pod's (for the fields a pod-level securityContext has).
fn effective<'a>(spec: &'a Value, c: &'a Value, field: &str) -> &'a Value {
    match &c["securityContext"][field] {
        Value::Null => &spec["securityContext"][field],
        v => v,
    }
}

/// The pods whose spec the daemon DaemonSet runs.
fn is_daemonset(o: &Value) -> bool {
    kind(o) == "DaemonSet" && name(o) == "camux"
}

fn daemonset() -> &'static Value {
    find(build("k8s"), "DaemonSet", "camux")
}

/// The volume mounted at `path` in container `c` of pod spec `spec`, and
/// the mount.
fn volume_at<'a>(spec: &'a Value, c: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let m = array(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c["name"]));
    let v = array(&spec["volumes"])
        .iter()
        .find(|v| v["name"] == m["name"])
        .unwrap_or_else(|| panic!("no volume {}", m["name"]));
    (v, m)
}

/// A container port, by number or by the name of one of `c`'s ports.
fn port_number(c: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name_ = port.as_str().expect("a port is a number or a name");
    array(&c["ports"])
        .iter()
        .find(|p| p["name"] == name_)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("container {} has no port named {name_}", c["name"]))
}

/// (path, port) of an httpGet probe.
fn http_probe(c: &Value, probe: &str) -> (String, u64) {
    let get = &c[probe]["httpGet"];
    assert!(
        get.is_object(),
        "container {}: no httpGet {probe}",
        c["name"]
    );
    (
        get["path"].as_str().unwrap().to_string(),
        port_number(c, &get["port"]),
    )
}

/// A Kubernetes quantity of bytes (`160Mi`, `1Gi`, `500M`, `1048576`).
fn bytes(q: &Value) -> u64 {
    let s = q
        .as_str()
        .map(str::to_string)
        .or_else(|| q.as_u64().map(|n| n.to_string()))
        .unwrap_or_else(|| panic!("not a quantity: {q}"));
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("quantity {s}"));
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => panic!("quantity {s}: unit {unit} not handled here"),
    };
    n * mult
}

/// The daemon config the rendered base's ConfigMap carries.
fn daemon_config() -> DaemonConfig {
    let cm = find(build("k8s"), "ConfigMap", "camux-daemon");
    let text = cm["data"]["daemon.yaml"]
        .as_str()
        .expect("ConfigMap camux-daemon has data.daemon.yaml");
    camux::daemon::config::parse(text, Path::new("ConfigMap camux-daemon#daemon.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_kustomization_builds() {
    let dirs: Vec<&str> = builds().keys().map(String::as_str).collect();
    for expected in [
        "k8s",
        "k8s/base",
        "k8s/examples/consumers",
        "k8s/examples/record-cronjob",
        "k8s/examples/with-podmonitor",
    ] {
        assert!(dirs.contains(&expected), "{expected} not built: {dirs:?}");
    }
    assert_eq!(
        build("k8s"),
        build("k8s/base"),
        "k8s/ must render exactly k8s/base"
    );
    let kinds: BTreeSet<String> = build("k8s").iter().map(what).collect();
    let expected: BTreeSet<String> = [
        "Namespace/camux-system",
        "ServiceAccount/camux",
        "ClusterRole/camux-reconciler",
        "ClusterRoleBinding/camux-reconciler",
        "ConfigMap/camux-daemon",
        "DaemonSet/camux",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, expected, "the objects of the base");
    // Every object of the base is in its namespace or cluster-scoped.
    for o in build("k8s") {
        let ns = &o["metadata"]["namespace"];
        match kind(o) {
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" => assert!(ns.is_null()),
            _ => assert_eq!(ns, NAMESPACE, "{}", what(o)),
        }
    }
}

#[test]
fn only_the_daemon_container_is_privileged() {
    let mut daemons = 0;
    for (dir, o) in all_objects() {
        let Some(spec) = pod_spec(o) else { continue };
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(spec[host], true, "{dir}: {} sets {host}", what(o));
        }
        for c in containers(spec) {
            let cname = c["name"].as_str().unwrap();
            let sc = &c["securityContext"];
            let privileged = sc["privileged"] == true;
            let allowed = is_daemonset(o) && cname == "daemon";
            assert_eq!(
                privileged,
                allowed,
                "{dir}: {} container {cname}: privileged is for the daemon container alone",
                what(o)
            );
            if allowed {
                daemons += 1;
            } else {
                assert_eq!(
                    array(&sc["capabilities"]["add"]),
                    &[] as &[Value],
                    "{dir}: {} container {cname} adds capabilities",
                    what(o)
                );
            }
            // During a surge two camux pods share a node: no host ports.
            for p in array(&c["ports"]) {
                assert!(
                    p["hostPort"].is_null(),
                    "{dir}: {} container {cname} uses a hostPort",
                    what(o)
                );
            }
        }
    }
    // Every build of the base (k8s, k8s/base, with-podmonitor) has it.
    let daemonsets = all_objects().filter(|(_, o)| is_daemonset(o)).count();
    assert!(daemonsets >= 3, "the base is built {daemonsets} times");
    assert_eq!(
        daemons, daemonsets,
        "the daemon container is privileged in every DaemonSet"
    );
}

#[test]
fn consumers_read_the_rings_read_only_as_non_root_without_capabilities() {
    let config = daemon_config();
    let mut consumers = BTreeSet::new();
    for (dir, o) in all_objects() {
        let Some(spec) = pod_spec(o) else { continue };
        if is_daemonset(o) {
            continue;
        }
        let who = format!("{dir}: {}", what(o));
        // The only host path a pod outside the DaemonSet may mount is the
        // ring directory, which must exist (the daemon made it).
        let mut ring_volumes = BTreeSet::new();
        for v in array(&spec["volumes"]) {
            let hp = &v["hostPath"];
            if hp.is_null() {
                continue;
            }
            assert_eq!(
                hp["path"], RING_DIR,
                "{who}: hostPath other than {RING_DIR}"
            );
            assert_eq!(
                hp["type"], "Directory",
                "{who}: {RING_DIR} must be type Directory"
            );
            ring_volumes.insert(v["name"].as_str().unwrap());
        }
        for c in containers(spec) {
            let cname = c["name"].as_str().unwrap();
            let who = format!("{who} container {cname}");
            for m in array(&c["volumeMounts"]) {
                let mounts_rings = ring_volumes.contains(m["name"].as_str().unwrap());
                let at_ring_dir = m["mountPath"].as_str().unwrap().starts_with(RING_DIR);
                if mounts_rings || at_ring_dir {
                    assert!(mounts_rings, "{who}: something else mounted at {RING_DIR}");
                    assert_eq!(m["readOnly"], true, "{who}: {RING_DIR} must be readOnly");
                    assert!(m["subPath"].is_null(), "{who}: no subPath of the rings");
                }
            }
            assert_eq!(
                effective(spec, c, "runAsNonRoot"),
                true,
                "{who}: runAsNonRoot"
            );
            let uid = effective(spec, c, "runAsUser");
            assert!(
                uid.as_u64().is_some_and(|u| u != 0),
                "{who}: a non-zero runAsUser"
            );
            let sc = &c["securityContext"];
            assert_eq!(
                sc["allowPrivilegeEscalation"], false,
                "{who}: allowPrivilegeEscalation"
            );
            assert_eq!(
                sc["readOnlyRootFilesystem"], true,
                "{who}: readOnlyRootFilesystem"
            );
            assert_eq!(
                sc["capabilities"]["drop"],
                json!(["ALL"]),
                "{who}: drop ALL"
            );
            assert_eq!(
                effective(spec, c, "seccompProfile")["type"],
                "RuntimeDefault",
                "{who}: seccompProfile"
            );
        }
        if ring_volumes.is_empty() {
            continue;
        }
        // A pod that reads rings says which stream (for the reconciler's
        // evictions), runs only where that stream is ready, and is in the
        // group the daemon gives that stream's ring.
        let labels = pod_labels(o);
        let stream = labels["camux.io/consumes"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: reads rings without a camux.io/consumes label"));
        consumers.insert(format!("{dir}: {} ({stream})", what(o)));
        let s = config
            .stream(stream)
            .unwrap_or_else(|| panic!("{who}: consumes {stream}, which the ConfigMap lacks"));
        if let Some(gid) = s
            .access
            .group
            .as_deref()
            .and_then(|g| g.parse::<u64>().ok())
        {
            let groups: Vec<u64> = array(&spec["securityContext"]["supplementalGroups"])
                .iter()
                .chain([&spec["securityContext"]["runAsGroup"]])
                .filter_map(Value::as_u64)
                .collect();
            assert!(
                groups.contains(&gid),
                "{who}: not in {stream}'s group {gid}: {groups:?}"
            );
        }
        let affinity = &spec["affinity"]["nodeAffinity"];
        let required = json!({
            "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": format!("stream.camux.io/{stream}"), "operator": "In", "values": ["ready"] }
            ]}]
        });
        assert_eq!(
            affinity["requiredDuringSchedulingIgnoredDuringExecution"], required,
            "{who}: required node affinity"
        );
        let preferred = array(&affinity["preferredDuringSchedulingIgnoredDuringExecution"]);
        assert!(
            preferred
                .iter()
                .any(|p| p["preference"]["matchExpressions"][0]["key"]
                    == format!("camux.io/primary-for-{stream}")),
            "{who}: a preferred affinity for {stream}'s primary node"
        );
        for taint in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let t = array(&spec["tolerations"])
                .iter()
                .find(|t| t["key"] == taint)
                .unwrap_or_else(|| panic!("{who}: no toleration for {taint}"));
            let secs = t["tolerationSeconds"].as_u64().unwrap();
            assert!(
                secs < 300,
                "{who}: {taint} tolerated {secs} s, no faster than the default"
            );
        }
        assert_eq!(
            spec["automountServiceAccountToken"], false,
            "{who}: no API token"
        );
    }
    let expected: BTreeSet<String> = [
        "k8s/examples/consumers: Deployment/classifier (cam0)",
        "k8s/examples/consumers: Deployment/motion (cam0)",
        "k8s/examples/record-cronjob: CronJob/record-cam0 (cam0)",
    ]
    .map(String::from)
    .into();
    assert!(
        consumers.is_superset(&expected),
        "the example consumers were checked: {consumers:?}"
    );
}

#[test]
fn every_consumer_deployment_has_a_budget_that_allows_failover() {
    let objects = build("k8s/examples/consumers");
    let mut seen = 0;
    for d in objects.iter().filter(|o| kind(o) == "Deployment") {
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let labels = pod_labels(d).as_object().unwrap();
        let pdbs: Vec<&Value> = objects
            .iter()
            .filter(|o| kind(o) == "PodDisruptionBudget")
            .filter(|p| {
                let sel = p["spec"]["selector"]["matchLabels"].as_object().unwrap();
                sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert_eq!(pdbs.len(), 1, "{}: one PodDisruptionBudget", what(d));
        let spec = &pdbs[0]["spec"];
        // With every pod healthy, at least one eviction must be allowed, or
        // the reconciler can never move the consumer off a dead stream.
        let allowed = match (
            spec["minAvailable"].as_i64(),
            spec["maxUnavailable"].as_i64(),
        ) {
            (Some(min), None) => replicas - min,
            (None, Some(max)) => max,
            _ => panic!(
                "{}: give minAvailable or maxUnavailable as a number",
                what(pdbs[0])
            ),
        };
        assert!(
            allowed >= 1,
            "{}: allows {allowed} evictions of {replicas} healthy pods: failover would be \
             refused forever",
            what(pdbs[0])
        );
        assert_eq!(spec["unhealthyPodEvictionPolicy"], "AlwaysAllow");
        seen += 1;
    }
    assert_eq!(seen, 2, "motion and classifier");
}

#[test]
fn the_daemonset_rolls_with_a_surge_on_camera_nodes() {
    let ds = daemonset();
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    );
    let spec = pod_spec(ds).unwrap();
    assert_eq!(spec["nodeSelector"], json!({"camux.io/camera": "true"}));
    assert_eq!(spec["serviceAccountName"], "camux");
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        (10..=60).contains(&grace),
        "a grace period that fits the handover: {grace}"
    );

    let daemon = container(spec, "daemon");
    assert_eq!(
        daemon["args"],
        json!(["daemon", "--config", "/etc/camux/daemon.yaml"])
    );
    let (rings, mount) = volume_at(spec, daemon, RING_DIR);
    assert_eq!(
        rings["hostPath"],
        json!({"path": RING_DIR, "type": "DirectoryOrCreate"})
    );
    assert_ne!(mount["readOnly"], true, "the daemon writes the rings");
    let (dev, _) = volume_at(spec, daemon, "/dev");
    assert_eq!(
        dev["hostPath"],
        json!({"path": "/dev", "type": "Directory"})
    );
    let (config, mount) = volume_at(spec, daemon, "/etc/camux");
    assert_eq!(config["configMap"]["name"], "camux-daemon");
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates"
    );
    assert_eq!(daemon["securityContext"]["readOnlyRootFilesystem"], true);

    // The daemon's HTTP port, as the ConfigMap sets it, is the one the
    // probes, the scrape annotations and the reconciler use.
    let cfg = daemon_config();
    assert_eq!(cfg.dir, Path::new(RING_DIR));
    let port = u64::from(cfg.listen.port());
    assert_eq!(port_number(daemon, &json!("metrics")), port);
    assert_eq!(
        http_probe(daemon, "livenessProbe"),
        ("/healthz".into(), port)
    );
    assert_eq!(
        http_probe(daemon, "readinessProbe"),
        ("/readyz".into(), port)
    );
    assert_eq!(
        http_probe(daemon, "startupProbe"),
        ("/healthz".into(), port)
    );
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let reconciler = container(spec, "reconciler");
    let args: Vec<&str> = array(&reconciler["args"])
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let url = args[args.iter().position(|a| *a == "--daemon-url").unwrap() + 1];
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
}

#[test]
fn the_reconciler_is_non_root_without_capabilities_and_knows_its_node() {
    let spec = pod_spec(daemonset()).unwrap();
    let c = container(spec, "reconciler");
    assert_eq!(
        c["args"],
        json!([
            "reconcile",
            "--daemon-url",
            "http://127.0.0.1:9470",
            "--listen",
            "0.0.0.0:9471",
            "--grace",
            "30s"
        ])
    );
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"], true);
    assert_eq!(effective(spec, c, "runAsNonRoot"), true);
    assert_eq!(effective(spec, c, "runAsUser"), 65532);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(
        effective(spec, c, "seccompProfile"),
        &json!({"type": "RuntimeDefault"})
    );
    assert!(
        c["volumeMounts"].is_null(),
        "the reconciler needs no volume"
    );
    let env: BTreeMap<&str, &Value> = array(&c["env"])
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                &e["valueFrom"]["fieldRef"]["fieldPath"],
            )
        })
        .collect();
    assert_eq!(env.get("NODE_NAME"), Some(&&json!("spec.nodeName")));
    assert_eq!(env.get("POD_NAME"), Some(&&json!("metadata.name")));
    assert_eq!(
        env.get("POD_NAMESPACE"),
        Some(&&json!("metadata.namespace"))
    );
    assert_eq!(port_number(c, &json!("reconciler-http")), 9471);
    assert_eq!(http_probe(c, "livenessProbe"), ("/healthz".into(), 9471));
}

#[test]
fn every_camux_image_is_the_crate_version() {
    let mut seen = 0;
    for (dir, o) in all_objects() {
        let Some(spec) = pod_spec(o) else { continue };
        for c in containers(spec) {
            let image = c["image"].as_str().unwrap();
            if image.starts_with(IMAGE) {
                assert_eq!(
                    image,
                    format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION")),
                    "{dir}: {} container {}: the image tag is the crate's version",
                    what(o),
                    c["name"]
                );
                seen += 1;
            }
        }
    }
    // daemon + reconciler in 3 builds of the base, motion, classifier, record.
    assert!(
        seen >= 9,
        "{seen} containers run the camux image, expected 9 or more"
    );
}

#[test]
fn the_cluster_role_is_the_least_the_reconciler_needs() {
    let objects = build("k8s");
    let role = find(objects, "ClusterRole", "camux-reconciler");
    let rules: BTreeSet<(String, String, String)> = array(&role["rules"])
        .iter()
        .flat_map(|r| {
            assert!(r["resourceNames"].is_null() && r["nonResourceURLs"].is_null());
            let strings = |k: &str| -> Vec<String> {
                array(&r[k])
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            let (groups, resources, verbs) =
                (strings("apiGroups"), strings("resources"), strings("verbs"));
            let mut out = Vec::new();
            for g in &groups {
                for res in &resources {
                    for v in &verbs {
                        out.push((g.clone(), res.clone(), v.clone()));
                    }
                }
            }
            out
        })
        .collect();
    let least: BTreeSet<(String, String, String)> = [
        ("", "nodes", "get"),
        ("", "nodes", "patch"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/eviction", "create"),
        ("events.k8s.io", "events", "create"),
    ]
    .iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    assert_eq!(rules, least, "the reconciler's rights, no more, no less");
    assert!(
        array(&role["rules"]).len() == 4,
        "one rule per resource group, as rbac.yaml explains them"
    );

    let binding = find(objects, "ClusterRoleBinding", "camux-reconciler");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "camux-reconciler"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "camux", "namespace": NAMESPACE}])
    );
    // No other RBAC object in any build.
    for (dir, o) in all_objects() {
        if matches!(
            kind(o),
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        ) {
            assert_eq!(name(o), "camux-reconciler", "{dir}: {}", what(o));
        }
    }
}

#[test]
fn the_daemon_memory_limit_holds_the_rings() {
    let config = daemon_config();
    let mut rings = Vec::new();
    for s in &config.streams {
        let frame = s
            .max_frame_bytes()
            .or_else(|| match &s.source {
                SourceConfig::V4l2 {
                    format: Some(f),
                    width: Some(w),
                    height: Some(h),
                    ..
                } => FrameLayout::packed(*f, *w, *h).ok().map(|l| l.frame_bytes),
                _ => None,
            })
            .unwrap_or_else(|| {
                panic!(
                    "stream {}: the config does not tell its frame size; give ring.max_frame_bytes \
                     (or the V4L2 format, width and height) so the daemon's memory can be sized",
                    s.name
                )
            });
        let geometry = Geometry {
            slot_count: s.slot_count(),
            max_frame_bytes: frame,
            page_size: NODE_PAGE_SIZE,
        };
        let file = geometry
            .layout()
            .unwrap_or_else(|e| panic!("{}: {e}", s.name))
            .file_bytes;
        rings.push((s.name.as_str(), file));
    }
    let total: u64 = rings.iter().map(|r| r.1).sum();
    let largest = rings.iter().map(|r| r.1).max().unwrap();
    // What daemonset.yaml's comment computes, so that a comment that no
    // longer matches the config fails here too.
    assert_eq!(
        rings,
        [("cam0", 22_126_592), ("cam1", 50_339_840), ("gps", 40_960)],
        "ring sizes (update the arithmetic in k8s/base/daemonset.yaml)"
    );

    let daemon = container(pod_spec(daemonset()).unwrap(), "daemon");
    let resources = &daemon["resources"];
    let limit = bytes(&resources["limits"]["memory"]);
    let request = bytes(&resources["requests"]["memory"]);
    let needed = total + largest; // a format change: a new ring beside the old
    assert!(
        limit >= needed + (16 << 20),
        "daemon memory limit {limit} B: the rings take {total} B ({rings:?}), {needed} B during \
         a format change of the largest, and the process needs some 16 MiB on top"
    );
    assert_eq!(request, limit, "the scheduler reserves what the rings take");
}

#[test]
fn namespaces_carry_the_pod_security_levels_they_need() {
    let labels =
        |objects: &[Value], ns: &str| find(objects, "Namespace", ns)["metadata"]["labels"].clone();
    let system = labels(build("k8s"), NAMESPACE);
    assert_eq!(system["pod-security.kubernetes.io/enforce"], "privileged");
    let vision = labels(build("k8s/examples/consumers"), "vision");
    // hostPath (even read-only) is refused by baseline and restricted:
    // enforce privileged, warn and audit restricted.
    assert_eq!(vision["pod-security.kubernetes.io/enforce"], "privileged");
    assert_eq!(vision["pod-security.kubernetes.io/warn"], "restricted");
    assert_eq!(vision["pod-security.kubernetes.io/audit"], "restricted");
    assert_eq!(
        labels(build("k8s/examples/record-cronjob"), "vision"),
        vision,
        "one vision namespace"
    );
}

#[test]
fn the_recording_cronjob_never_overlaps_and_cleans_up() {
    let cj = find(
        build("k8s/examples/record-cronjob"),
        "CronJob",
        "record-cam0",
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        assert!(spec[field].as_u64().is_some(), "CronJob {field}");
    }
    let job = &spec["jobTemplate"]["spec"];
    for field in ["activeDeadlineSeconds", "backoffLimit"] {
        assert!(job[field].as_u64().is_some(), "Job {field}");
    }
    let pod = pod_spec(cj).unwrap();
    assert_eq!(pod["restartPolicy"], "Never");
    let record = container(pod, "record");
    assert_eq!(record["args"][0], "record");
    assert!(array(&pod["initContainers"])
        .iter()
        .any(|c| c["name"] == "record"));
    let upload = container(pod, "upload");
    let image = upload["image"].as_str().unwrap();
    let tag = image.rsplit_once(':').map(|t| t.1).unwrap_or("");
    assert!(
        !tag.is_empty() && tag != "latest",
        "upload image pinned: {image}"
    );
}

#[test]
fn the_podmonitor_scrapes_the_daemon_and_the_reconciler() {
    let objects = build("k8s/examples/with-podmonitor");
    let pm = find(objects, "PodMonitor", "camux");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pm["metadata"]["namespace"], NAMESPACE);
    // The CRD schema .ci/k8s-check validates against allows unknown
    // fields: pin them here.
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&pm["spec"]), ["podMetricsEndpoints", "selector"]);
    let ds = find(objects, "DaemonSet", "camux");
    let labels = pod_labels(ds).as_object().unwrap();
    let selector = pm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert_eq!(keys(&pm["spec"]["selector"]), ["matchLabels"]);
    assert!(
        selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "selects the camux pods"
    );
    let spec = pod_spec(ds).unwrap();
    let mut ports = Vec::new();
    for e in array(&pm["spec"]["podMetricsEndpoints"]) {
        assert_eq!(keys(e), ["interval", "path", "port"]);
        assert_eq!(e["path"], "/metrics");
        let port = e["port"].as_str().unwrap();
        let number = containers(spec)
            .flat_map(|c| array(&c["ports"]).iter())
            .find(|p| p["name"] == port)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {port}"));
        ports.push(number);
    }
    assert_eq!(ports, [9470, 9471]);
    // The component adds the PodMonitor and changes nothing else.
    let rest: Vec<&Value> = objects.iter().filter(|o| kind(o) != "PodMonitor").collect();
    assert_eq!(rest, build("k8s").iter().collect::<Vec<_>>());
}
