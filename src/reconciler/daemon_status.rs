//! Reading the daemon's `/status` (on its own pod, so over loopback) into
//! a [`DaemonView`].
//!
//! The response is untrusted input: its size is capped
//! ([`MAX_STATUS_BYTES`]), the whole exchange has a deadline, and anything
//! that is not a 200 with a `streams` array of `{name, state}` objects is
//! [`DaemonView::Unknown`] with the reason, which makes the decision
//! change nothing.
//!
//! ```
//! use camux::reconciler::daemon_status::parse_status;
//! use camux::reconciler::decide::{DaemonView, StreamView};
//!
//! let body = br#"{"daemon":{"version":"0.1.0"},"streams":[{"name":"cam0","state":"publishing","fps":25.0}]}"#;
//! assert_eq!(parse_status(body), Ok(DaemonView::Known(vec![StreamView::new("cam0", "publishing")])));
//! assert!(parse_status(b"{\"streams\": 3}").is_err());
//! ```

use super::decide::{DaemonView, StreamView};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::time::Duration;

/// The largest `/status` body accepted (a daemon with hundreds of streams
/// and readers stays far below it).
pub const MAX_STATUS_BYTES: usize = 4 << 20;

#[derive(Deserialize)]
struct Doc {
    streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    name: String,
    state: String,
}

/// Parses a `/status` body; unknown fields are ignored, missing or
/// mistyped ones are an error naming the place.
pub fn parse_status(body: &[u8]) -> Result<DaemonView, String> {
    let doc: Doc = serde_json::from_slice(body)
        .map_err(|e| format!("/status is not what a camux daemon serves: {e}"))?;
    let mut names = std::collections::BTreeSet::new();
    for s in &doc.streams {
        if !names.insert(s.name.as_str()) {
            return Err(format!("/status lists stream {:?} twice", s.name));
        }
    }
    Ok(DaemonView::Known(
        doc.streams
            .into_iter()
            .map(|s| StreamView {
                name: s.name,
                state: s.state,
            })
            .collect(),
    ))
}

/// Where the daemon's HTTP server is: `http://HOST:PORT` (only plain
/// HTTP: it is the same pod's loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonUrl {
    authority: String,
}

impl std::str::FromStr for DaemonUrl {
    type Err = String;

    /// ```
    /// use camux::reconciler::daemon_status::DaemonUrl;
    /// assert!("http://127.0.0.1:9470".parse::<DaemonUrl>().is_ok());
    /// assert!("https://127.0.0.1:9470".parse::<DaemonUrl>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{s:?} is not a daemon URL ({why}): give http://HOST:PORT, e.g. http://127.0.0.1:9470")
        };
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(bad("no path or user part allowed"));
        }
        let (_, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        port.parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?;
        Ok(DaemonUrl {
            authority: authority.to_string(),
        })
    }
}

impl std::fmt::Display for DaemonUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// Fetches `/status` within `timeout`; every failure is an
/// [`DaemonView::Unknown`] saying what went wrong.
pub async fn fetch(url: &DaemonUrl, timeout: Duration) -> DaemonView {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok(body)) => parse_status(&body).unwrap_or_else(DaemonView::Unknown),
        Ok(Err(e)) => DaemonView::Unknown(format!("GET {url}/status: {e}")),
        Err(_) => DaemonView::Unknown(format!("GET {url}/status: no answer within {timeout:?}")),
    }
}

async fn get(url: &DaemonUrl) -> Result<Bytes, String> {
    let stream = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("/status")
        .header(hyper::header::HOST, &url.authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = Limited::new(res.into_body(), MAX_STATUS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    conn.abort();
    if status != hyper::StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string();
        return Err(format!("HTTP {status}: {text}"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_not_a_status_are_refused_with_a_reason() {
        for (body, want) in [
            (&b""[..], "not what a camux daemon serves"),
            (b"{}", "missing field `streams`"),
            (b"{\"streams\":[{\"name\":\"a\"}]}", "missing field `state`"),
            (b"{\"streams\":[{\"name\":1,\"state\":\"x\"}]}", "invalid type"),
            (
                b"{\"streams\":[{\"name\":\"a\",\"state\":\"publishing\"},{\"name\":\"a\",\"state\":\"retrying\"}]}",
                "twice",
            ),
        ] {
            let e = parse_status(body).unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            parse_status(b"{\"streams\":[]}"),
            Ok(DaemonView::Known(vec![]))
        );
    }

    #[test]
    fn urls() {
        for bad in [
            "127.0.0.1:9470",
            "http://",
            "http://host",
            "http://h:x",
            "http://h:1/status",
            "http://u@h:1",
        ] {
            assert!(bad.parse::<DaemonUrl>().is_err(), "{bad}");
        }
        let u: DaemonUrl = "http://127.0.0.1:9470/".parse().unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:9470");
    }

    #[tokio::test]
    async fn nothing_listening_is_unknown() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let u: DaemonUrl = format!("http://{addr}").parse().unwrap();
        match fetch(&u, Duration::from_secs(5)).await {
            DaemonView::Unknown(why) => assert!(why.contains("/status"), "{why}"),
            v => panic!("{v:?}"),
        }
    }

    #[tokio::test]
    async fn a_real_daemon_board_is_read() {
        use crate::daemon::http::HttpServer;
        use crate::daemon::status::{Board, StreamState};
        let board = std::sync::Arc::new(Board::new());
        let cam = board.add("cam0", "synthetic", true, "/run/camux/cam0.ring".into());
        cam.set_state(StreamState::Publishing);
        let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), board.clone()).unwrap();
        let u: DaemonUrl = format!("http://{}", server.local_addr()).parse().unwrap();
        assert_eq!(
            fetch(&u, Duration::from_secs(5)).await,
            DaemonView::Known(vec![StreamView::new("cam0", "publishing")])
        );
        server.shutdown();
    }
}
