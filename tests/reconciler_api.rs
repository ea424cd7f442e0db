//! The reconciler's Kubernetes I/O against a mock API server (tower-test,
//! as kube-rs' controller examples test theirs): the exact requests it
//! makes (paths, queries, content types, bodies), the Events it records,
//! and its retries on 429 and 5xx.
#![cfg(feature = "reconcile")]

use camux::reconciler::decide::{Action, EvictOutcome, PodRef};
use camux::reconciler::kube_io::{KubeIo, Outcome, Retry};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn io() -> (KubeIo, ApiHandle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let io = KubeIo::new(client, "edge-1", "camux-x7k2p").with_retry(Retry {
        attempts: 3,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    });
    (io, handle)
}

/// The next request: it must be `method path_and_query`; returns its
/// content type, its body as JSON (Null if empty) and the responder.
async fn expect(
    h: &mut ApiHandle,
    method: Method,
    path_and_query: &str,
) -> (String, Value, SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), h.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request came; expected {method} {path_and_query}"))
        .expect("the client hung up");
    assert_eq!(
        (req.method().clone(), req.uri().to_string()),
        (method, path_and_query.to_string()),
        "request line"
    );
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {bytes:?}"))
    };
    (ct, body, send)
}

fn respond(send: SendResponse<Response<Body>>, code: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message})
}

fn node(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1", "labels": labels}})
}

fn ready(streams: &[&str]) -> BTreeMap<String, String> {
    streams
        .iter()
        .map(|s| (format!("stream.camux.io/{s}"), "ready".to_string()))
        .collect()
}

const APPLY_PATH: &str = "/api/v1/nodes/edge-1?&force=true&fieldManager=camux-reconciler";

#[tokio::test]
async fn labels_are_server_side_applied_with_the_field_manager_forced() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.apply_labels(&ready(&["cam0", "cam1"])).await });
    // (The response is what the server made of it; the caller gets its labels.)
    let (ct, body, send) = expect(&mut h, Method::PATCH, APPLY_PATH).await;
    assert_eq!(ct, "application/apply-patch+yaml");
    assert_eq!(
        body,
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "edge-1", "labels": {"stream.camux.io/cam0": "ready", "stream.camux.io/cam1": "ready"}},
        })
    );
    respond(
        send,
        200,
        node(json!({"stream.camux.io/cam0": "ready", "x": "y"})),
    );
    let after = call.await.unwrap().expect("apply succeeds");
    assert_eq!(after.get("x").map(String::as_str), Some("y"));
}

#[tokio::test]
async fn an_empty_apply_drops_every_label_the_manager_owns() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.apply_labels(&BTreeMap::new()).await });
    let (_, body, send) = expect(&mut h, Method::PATCH, APPLY_PATH).await;
    assert_eq!(body["metadata"], json!({"name": "edge-1", "labels": {}}));
    respond(send, 200, node(json!({})));
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn foreign_labels_are_removed_with_a_merge_patch_of_nulls() {
    let (io, mut h) = io();
    let call =
        tokio::spawn(async move { io.remove_labels(&["stream.camux.io/old".to_string()]).await });
    let (ct, body, send) = expect(
        &mut h,
        Method::PATCH,
        "/api/v1/nodes/edge-1?&fieldManager=camux-reconciler",
    )
    .await;
    assert_eq!(ct, "application/merge-patch+json");
    assert_eq!(
        body,
        json!({"metadata": {"labels": {"stream.camux.io/old": null}}})
    );
    respond(send, 200, node(json!({})));
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn patches_are_retried_on_5xx_and_429_then_succeed() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.apply_labels(&ready(&["cam0"])).await });
    let (_, first, send) = expect(&mut h, Method::PATCH, APPLY_PATH).await;
    respond(
        send,
        503,
        status(503, "ServiceUnavailable", "etcd leader changed"),
    );
    let mut throttled = status(429, "TooManyRequests", "slow down");
    throttled["details"] = json!({"retryAfterSeconds": 1});
    let (_, second, send) = expect(&mut h, Method::PATCH, APPLY_PATH).await;
    assert_eq!(first, second, "the same patch again");
    let t = std::time::Instant::now();
    respond(send, 429, throttled);
    let (_, _, send) = expect(&mut h, Method::PATCH, APPLY_PATH).await;
    // retryAfterSeconds is honoured up to the cap (50 ms here), not beyond.
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "waited {:?}",
        t.elapsed()
    );
    respond(send, 200, node(json!({})));
    call.await.unwrap().expect("third attempt succeeds");
}

#[tokio::test]
async fn retries_end_and_the_error_says_what_and_why() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.node_labels().await });
    for _ in 0..3 {
        let (_, _, send) = expect(&mut h, Method::GET, "/api/v1/nodes/edge-1").await;
        respond(send, 500, status(500, "InternalError", "boom"));
    }
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), "server");
    assert!(err.to_string().starts_with("get node edge-1: "), "{err}");
    // A 403 is not retried: RBAC will not change by waiting.
    let (io, mut h) = self::io();
    let call = tokio::spawn(async move { io.node_labels().await });
    let (_, _, send) = expect(&mut h, Method::GET, "/api/v1/nodes/edge-1").await;
    respond(
        send,
        403,
        status(403, "Forbidden", "nodes \"edge-1\" is forbidden"),
    );
    assert_eq!(call.await.unwrap().unwrap_err().kind(), "forbidden");
}

#[tokio::test]
async fn consumers_are_listed_on_this_node_from_the_cache() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.consumer_pods().await });
    let (_, body, send) = expect(
        &mut h,
        Method::GET,
        "/api/v1/pods?&fieldSelector=spec.nodeName%3Dedge-1&labelSelector=camux.io%2Fconsumes&resourceVersion=0&resourceVersionMatch=NotOlderThan",
    )
    .await;
    assert_eq!(body, Value::Null);
    respond(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "motion-1", "namespace": "vision", "uid": "u1", "labels": {"camux.io/consumes": "cam0"},
                          "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "motion-7d", "uid": "rs1", "controller": true}]},
             "spec": {"nodeName": "edge-1", "containers": []}},
            {"metadata": {"name": "old", "namespace": "vision", "uid": "u2", "labels": {"camux.io/consumes": "cam1"},
                          "deletionTimestamp": "2026-12-01T10:00:00Z"},
             "spec": {"nodeName": "edge-1", "containers": []}}
        ]}),
    );
    let pods = call.await.unwrap().unwrap();
    assert_eq!(pods.len(), 2);
    assert_eq!(
        (
            pods[0].name.as_str(),
            pods[0].uid.as_str(),
            pods[0].consumes.as_deref(),
            pods[0].node.as_deref(),
            pods[0].terminating,
            pods[0].controller_uid.as_deref()
        ),
        (
            "motion-1",
            "u1",
            Some("cam0"),
            Some("edge-1"),
            false,
            Some("rs1")
        )
    );
    assert!(pods[1].terminating);
}

fn motion() -> PodRef {
    PodRef {
        namespace: "vision".into(),
        name: "motion-1".into(),
        uid: "u1".into(),
    }
}

fn evict_action() -> Action {
    Action::Evict {
        pod: motion(),
        stream: "cam0".into(),
        down_for: Duration::from_secs(31),
    }
}

const EVICT_PATH: &str = "/api/v1/namespaces/vision/pods/motion-1/eviction?";
const POD_EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/vision/events?";

#[tokio::test]
async fn eviction_posts_an_eviction_with_the_uid_precondition_and_records_an_event() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.execute(&evict_action()).await });
    let (ct, body, send) = expect(&mut h, Method::POST, EVICT_PATH).await;
    assert_eq!(ct, "application/json");
    assert_eq!(body["apiVersion"], "policy/v1");
    assert_eq!(body["kind"], "Eviction");
    assert_eq!(
        body,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "motion-1", "namespace": "vision"},
            "deleteOptions": {"preconditions": {"uid": "u1"}},
        })
    );
    respond(
        send,
        201,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
    );

    let (_, ev, send) = expect(&mut h, Method::POST, POD_EVENTS).await;
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["kind"], "Event");
    assert_eq!(ev["metadata"]["generateName"], "motion-1.camux.");
    assert_eq!(ev["reason"], "ConsumerEvicted");
    assert_eq!(ev["action"], "Evict");
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["reportingController"], "camux.io/reconciler");
    assert_eq!(ev["reportingInstance"], "camux-x7k2p");
    assert_eq!(
        ev["regarding"],
        json!({"apiVersion": "v1", "kind": "Pod", "namespace": "vision", "name": "motion-1", "uid": "u1"})
    );
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains("stream cam0 has been down on node edge-1 for 31s"),
        "{note}"
    );
    assert!(
        ev["eventTime"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ev}"
    );
    respond(send, 201, ev.clone());

    assert_eq!(
        call.await.unwrap(),
        Outcome::Evicted(motion(), EvictOutcome::Evicted)
    );
}

#[tokio::test]
async fn a_disruption_budget_refusal_is_reported_not_retried_inline() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.execute(&evict_action()).await });
    let (_, _, send) = expect(&mut h, Method::POST, EVICT_PATH).await;
    respond(
        send,
        429,
        status(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        ),
    );
    // The next request is the Event, not a second eviction: the decision's
    // memory spaces the attempts (seconds apart, not milliseconds).
    let (_, ev, send) = expect(&mut h, Method::POST, POD_EVENTS).await;
    assert_eq!(ev["reason"], "EvictionRefused");
    assert_eq!(ev["type"], "Warning");
    assert!(
        ev["note"].as_str().unwrap().contains("disruption budget"),
        "{ev}"
    );
    respond(send, 201, ev.clone());
    assert_eq!(
        call.await.unwrap(),
        Outcome::Evicted(
            motion(),
            EvictOutcome::Refused(
                "Cannot evict pod as it would violate the pod's disruption budget.".into()
            )
        )
    );
}

#[tokio::test]
async fn an_eviction_of_a_pod_that_is_gone_or_replaced_is_done() {
    for code in [404, 409] {
        let (io, mut h) = io();
        let call = tokio::spawn(async move { io.evict(&motion()).await });
        let (_, _, send) = expect(&mut h, Method::POST, EVICT_PATH).await;
        respond(send, code, status(code, "NotFound", "gone"));
        assert_eq!(call.await.unwrap(), EvictOutcome::Gone, "{code}");
    }
}

#[tokio::test]
async fn a_label_change_records_an_event_on_the_node_and_a_failed_event_does_not_fail_it() {
    let (io, mut h) = io();
    let action = Action::ApplyLabels {
        labels: ready(&["cam0"]),
        added: vec!["cam0".into()],
        removed: vec!["cam1".into()],
    };
    let call = tokio::spawn(async move { io.execute(&action).await });
    let (_, _, send) = expect(&mut h, Method::PATCH, APPLY_PATH).await;
    respond(send, 200, node(json!({"stream.camux.io/cam0": "ready"})));
    let path = "/apis/events.k8s.io/v1/namespaces/default/events?";
    let (_, ev, send) = expect(&mut h, Method::POST, path).await;
    assert_eq!(
        ev["regarding"],
        json!({"apiVersion": "v1", "kind": "Node", "name": "edge-1"})
    );
    assert_eq!(ev["reason"], "StreamNotReady");
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["note"], "streams ready: cam0; not ready: cam1");
    // Events are retried like everything else, then given up on.
    respond(send, 500, status(500, "InternalError", "x"));
    for _ in 0..2 {
        let (_, _, send) = expect(&mut h, Method::POST, path).await;
        respond(send, 500, status(500, "InternalError", "x"));
    }
    assert_eq!(call.await.unwrap(), Outcome::Labelled(ready(&["cam0"])));
}

#[tokio::test]
async fn the_shutdown_rule_reads_its_own_pod_for_its_controller() {
    let (io, mut h) = io();
    let call = tokio::spawn(async move { io.controller_of("camux-system", "camux-x7k2p").await });
    let (_, _, send) = expect(
        &mut h,
        Method::GET,
        "/api/v1/namespaces/camux-system/pods/camux-x7k2p",
    )
    .await;
    respond(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "camux-x7k2p", "namespace": "camux-system",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "camux", "uid": "ds-1", "controller": true}]}}),
    );
    assert_eq!(call.await.unwrap().unwrap().as_deref(), Some("ds-1"));
}
