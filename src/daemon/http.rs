//! The daemon's HTTP endpoints, for Prometheus and Kubernetes probes:
//!
//! - `GET /metrics`: the Prometheus text format ([`metrics`]),
//!   gathered from the [`Board`] at scrape time.
//! - `GET /healthz`: `200 ok` while the daemon's main loop goes round
//!   ([`Board::tick`] within [`HttpOptions::healthz_max_tick_age`]), else
//!   `503` saying how long it has been. For a liveness probe.
//! - `GET /readyz`: `200 ready` when every required stream publishes or
//!   stands by ([`Board::ready`]), else `503` naming the streams that do not.
//!   For a readiness probe.
//! - `GET /status`: JSON,
//!   `{"daemon": {"version", "pid", "uptime_s"}, "streams": [StreamStatus, ...]}`
//!   (streams in name order, fields as [`StreamStatus`] serializes them).
//!
//! Anything else is `404` (`405` for another method on a known path). Only
//! `GET` (and `HEAD`) routes exist and no handler reads a request body.
//!
//! [`HttpServer`] runs all this on its own thread with a single-threaded
//! tokio runtime, so a plain (non-async) `main` can start and stop it; each
//! connection is a tokio task, so a slow or stuck client delays nobody
//! else, and [`HttpServer::shutdown`] waits for open connections at most
//! [`HttpOptions::shutdown_grace`].
//!
//! ```
//! use camux::daemon::http::HttpServer;
//! use camux::daemon::status::Board;
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//!
//! let board = Arc::new(Board::new());
//! let server = HttpServer::start("127.0.0.1:0".parse()?, board.clone())?;
//!
//! let mut conn = std::net::TcpStream::connect(server.local_addr())?;
//! conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: camux\r\nConnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! conn.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200"), "{response}");
//!
//! server.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::metrics::{self, Metrics};
use super::status::{Board, StreamStatus};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// Tunables of the HTTP endpoints and server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// `/healthz` fails when the main loop has not gone round
    /// ([`Board::tick`]) for this long. Default 10 s.
    pub healthz_max_tick_age: Duration,
    /// How long [`HttpServer::shutdown`] lets open connections finish before
    /// it drops them. Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            healthz_max_tick_age: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
struct AppState {
    board: Arc<Board>,
    metrics: Metrics,
    max_tick_age: Duration,
}

/// The endpoints as an axum [`Router`], for serving on a listener of one's
/// own ([`HttpServer`] serves it on a TCP address).
pub fn router(board: Arc<Board>, options: &HttpOptions) -> Router {
    let state = AppState {
        metrics: Metrics::new(board.clone()),
        board,
        max_tick_age: options.healthz_max_tick_age,
    };
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics_handler(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(app): State<AppState>) -> Response {
    let age = app.board.since_tick();
    if age < app.max_tick_age {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let why = format!(
            "main loop stalled: last went round {:.1} s ago (limit {:.1} s)\n",
            age.as_secs_f64(),
            app.max_tick_age.as_secs_f64()
        );
        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
    }
}

async fn readyz(State(app): State<AppState>) -> Response {
    match app.board.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(not) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {not}\n"),
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct DaemonInfo {
    version: &'static str,
    pid: u32,
    uptime_s: f64,
}

#[derive(Serialize)]
struct StatusDoc {
    daemon: DaemonInfo,
    streams: Vec<StreamStatus>,
}

async fn status(State(app): State<AppState>) -> Json<StatusDoc> {
    Json(StatusDoc {
        daemon: DaemonInfo {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            uptime_s: app.board.uptime().as_secs_f64(),
        },
        streams: app.board.snapshot(),
    })
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

/// The HTTP server, on its own thread; [`shutdown`](HttpServer::shutdown)
/// (or dropping it) stops it.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl HttpServer {
    /// Binds `addr` and serves [`router`] on it with default
    /// [`HttpOptions`]. A port of 0 picks a free one ([`local_addr`]
    /// says which).
    ///
    /// Errors (an address in use, not local, not permitted) come back here,
    /// naming the address, before anything runs.
    ///
    /// [`local_addr`]: HttpServer::local_addr
    pub fn start(addr: SocketAddr, board: Arc<Board>) -> io::Result<HttpServer> {
        HttpServer::start_with(addr, board, HttpOptions::default())
    }

    /// [`start`](HttpServer::start) with the given options.
    pub fn start_with(
        addr: SocketAddr,
        board: Arc<Board>,
        options: HttpOptions,
    ) -> io::Result<HttpServer> {
        let named = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("HTTP server on {addr}: {what}: {e}"))
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| named("bind", e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| named("set_nonblocking", e))?;
        let local = std_listener
            .local_addr()
            .map_err(|e| named("local_addr", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| named("starting the runtime", e))?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| named("listen", e))?
        };
        let app = router(board, &options);
        let (stop, stopped) = oneshot::channel();
        let grace = options.shutdown_grace;
        let thread = std::thread::Builder::new()
            .name("camux-http".into())
            .spawn(move || runtime.block_on(serve(listener, app, stopped, grace)))
            .map_err(|e| named("spawning its thread", e))?;
        Ok(HttpServer {
            addr: local,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port picked, if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open connections finish (at most
    /// [`HttpOptions::shutdown_grace`], then drops them) and joins the
    /// server's thread. Dropping the server does the same.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(addr = %self.addr, "HTTP server failed: {e}"),
            Err(_) => tracing::error!(addr = %self.addr, "HTTP server thread panicked"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serves until `stop` fires (or its sender is dropped), then gives open
/// connections `grace` to finish; what is left is dropped with the runtime.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: oneshot::Receiver<()>,
    grace: Duration,
) -> io::Result<()> {
    let (stopping, stopping_rx) = oneshot::channel::<()>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.await;
            let _ = stopping.send(());
        })
        .into_future();
    let grace_over = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server finished without the signal: nothing to time out.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = grace_over => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::StreamState;
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    struct Reply {
        status: u16,
        headers: HashMap<String, String>,
        body: String,
    }

    /// A minimal HTTP/1.1 client: one request, `Connection: close`, read to EOF.
    fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    fn get(addr: SocketAddr, path: &str) -> Reply {
        request(addr, "GET", path)
    }

    fn dechunk(mut s: &str) -> String {
        let mut out = String::new();
        loop {
            let (size, rest) = s.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                return out;
            }
            out.push_str(&rest[..n]);
            s = &rest[n + 2..];
        }
    }

    /// cam0: required, publishing. cam1: required, starting. imu: optional,
    /// retrying after an error.
    fn board() -> Arc<Board> {
        let board = Arc::new(Board::new());
        let cam0 = board.add("cam0", "synthetic", true, "/run/camux/cam0.ring".into());
        cam0.set_state(StreamState::Publishing);
        cam0.update(|s| {
            s.published = 250;
            s.dropped_no_slot = 4;
            s.driver_drops = 1;
            s.readers = 2;
            s.holds = 3;
            s.fps = 25.0;
            s.source_cpu_ms = 12.5;
            s.format = Some("YUYV 640x480 @ 25 fps".into());
        });
        cam0.observe_latency(0.000_04);
        cam0.observe_latency(0.002);
        board.add("cam1", "v4l2", true, "/run/camux/cam1.ring".into());
        let imu = board.add("imu", "sensor", false, "/run/camux/imu.ring".into());
        imu.set_error(
            "not_found",
            "opening /dev/ttyUSB0: no such device".into(),
            true,
            StreamState::Retrying,
        );
        imu.update(|s| {
            s.restarts = 3;
            s.retry_in_ms = Some(800);
        });
        board
    }

    #[test]
    fn endpoints_answer_from_the_board() {
        let board = board();
        let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), board.clone()).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let r = get(addr, "/healthz");
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

        // /readyz follows the required streams.
        let r = get(addr, "/readyz");
        assert_eq!(r.status, 503);
        assert!(r.body.contains("cam1: starting"), "{}", r.body);
        assert!(!r.body.contains("imu"), "an optional stream: {}", r.body);
        let cam1 = board.cells()[1].clone();
        cam1.set_state(StreamState::Standby);
        let r = get(addr, "/readyz");
        assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
        board.cells()[0].set_state(StreamState::Stalled);
        let r = get(addr, "/readyz");
        assert_eq!(r.status, 503);
        assert!(r.body.contains("cam0: stalled"), "{}", r.body);
        board.cells()[0].set_state(StreamState::Publishing);

        // /status
        let r = get(addr, "/status");
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(doc["daemon"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["daemon"]["pid"], std::process::id());
        assert!(doc["daemon"]["uptime_s"].as_f64().unwrap() >= 0.0);
        let streams = doc["streams"].as_array().unwrap();
        let names: Vec<&str> = streams
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["cam0", "cam1", "imu"]);
        let (cam0, imu) = (&streams[0], &streams[2]);
        assert_eq!(cam0["state"], "publishing");
        assert_eq!(cam0["required"], true);
        assert_eq!(cam0["published"], 250);
        assert_eq!(cam0["source_cpu_ms"], 12.5);
        assert_eq!(cam0["format"], "YUYV 640x480 @ 25 fps");
        assert_eq!(cam0["last_error"], serde_json::Value::Null);
        assert_eq!(streams[1]["state"], "standby");
        assert_eq!(imu["state"], "retrying");
        assert_eq!(imu["required"], false);
        assert_eq!(imu["retry_in_ms"], 800);
        assert_eq!(imu["last_error"]["kind"], "not_found");
        assert_eq!(imu["last_error"]["retryable"], true);

        // /metrics agrees with /status.
        let r = get(addr, "/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let scrape =
            prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_string()))).unwrap();
        let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
            let s = scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{other:?}"),
            }
        };
        for s in streams {
            let name = s["name"].as_str().unwrap();
            let l = [("stream", name)];
            let state = s["state"].as_str().unwrap();
            assert_eq!(
                value("camux_frames_published_total", &l),
                s["published"].as_f64().unwrap()
            );
            assert_eq!(
                value(
                    "camux_frames_dropped_total",
                    &[("stream", name), ("reason", "no_slot")]
                ),
                s["dropped_no_slot"].as_f64().unwrap()
            );
            assert_eq!(
                value(
                    "camux_frames_dropped_total",
                    &[("stream", name), ("reason", "driver")]
                ),
                s["driver_drops"].as_f64().unwrap()
            );
            assert_eq!(value("camux_readers", &l), s["readers"].as_f64().unwrap());
            assert_eq!(value("camux_holds", &l), s["holds"].as_f64().unwrap());
            assert_eq!(
                value("camux_source_restarts_total", &l),
                s["restarts"].as_f64().unwrap()
            );
            assert_eq!(
                value("camux_stream_source_cpu_seconds_total", &l),
                s["source_cpu_ms"].as_f64().unwrap() / 1e3
            );
            assert_eq!(
                value("camux_stream_up", &l),
                f64::from(u8::from(state == "publishing"))
            );
            for st in StreamState::ALL {
                let on = f64::from(u8::from(st.name() == state));
                assert_eq!(
                    value(
                        "camux_stream_state",
                        &[("stream", name), ("state", st.name())]
                    ),
                    on,
                    "{name} {}",
                    st.name()
                );
            }
            let cell = board
                .cells()
                .into_iter()
                .find(|c| c.get().name == name)
                .unwrap();
            let h = cell.latency();
            assert_eq!(
                value("camux_publish_latency_seconds_count", &l),
                h.count as f64
            );
            assert_eq!(value("camux_publish_latency_seconds_sum", &l), h.sum);
        }
        let imu_err = imu["last_error"]["at_unix_ms"].as_f64().unwrap() / 1000.0;
        assert_eq!(
            value("camux_last_error_timestamp_seconds", &[("stream", "imu")]),
            imu_err
        );
        // Every sample's family has HELP text.
        for s in &scrape.samples {
            let family = s
                .metric
                .strip_suffix("_sum")
                .or_else(|| s.metric.strip_suffix("_count"))
                .filter(|f| scrape.docs.contains_key(*f))
                .unwrap_or(&s.metric);
            assert!(scrape.docs.contains_key(family), "no HELP for {}", s.metric);
        }

        // Unknown paths, other methods.
        assert_eq!(get(addr, "/").status, 404);
        assert_eq!(get(addr, "/metrics/x").status, 404);
        assert_eq!(request(addr, "POST", "/metrics").status, 405);
        assert_eq!(request(addr, "HEAD", "/healthz").status, 200);

        server.shutdown();
        assert!(TcpStream::connect(addr).is_err(), "still listening");
    }

    #[test]
    fn healthz_fails_when_the_main_loop_stops_ticking() {
        let board = Arc::new(Board::new());
        let options = HttpOptions {
            healthz_max_tick_age: Duration::from_millis(150),
            ..HttpOptions::default()
        };
        let server =
            HttpServer::start_with("127.0.0.1:0".parse().unwrap(), board.clone(), options).unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/healthz").status, 200);
        std::thread::sleep(Duration::from_millis(300));
        let r = get(addr, "/healthz");
        assert_eq!(r.status, 503);
        assert!(r.body.contains("main loop stalled"), "{}", r.body);
        board.tick();
        assert_eq!(get(addr, "/healthz").status, 200);
        // An empty board is ready: nothing is required.
        assert_eq!(get(addr, "/readyz").status, 200);
        server.shutdown();
    }

    #[test]
    fn binding_an_address_in_use_fails_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = HttpServer::start(addr, Arc::new(Board::new())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn a_stuck_client_blocks_neither_others_nor_shutdown() {
        let options = HttpOptions {
            shutdown_grace: Duration::from_millis(200),
            ..HttpOptions::default()
        };
        let server =
            HttpServer::start_with("127.0.0.1:0".parse().unwrap(), board(), options).unwrap();
        let addr = server.local_addr();
        // Half a request head, never finished; and an idle connection.
        let mut stuck = TcpStream::connect(addr).unwrap();
        stuck
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let _idle = TcpStream::connect(addr).unwrap();
        assert_eq!(get(addr, "/status").status, 200);
        assert_eq!(get(addr, "/metrics").status, 200);
        let t = Instant::now();
        server.shutdown();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn dropping_the_server_stops_it() {
        let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), board()).unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/healthz").status, 200);
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
