//! `camux daemon`: every stream of a config, supervised, with HTTP metrics,
//! health and status.

use super::{json, Status};
use anyhow::Context;
use camux::daemon::config::{self, DaemonConfig, LogFormat};
use camux::daemon::http::HttpServer;
use camux::daemon::status::Board;
use camux::daemon::supervisor::Supervisor;
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The long `--help` text.
pub const LONG_ABOUT: &str = "\
Run the DaemonSet's process: publish every stream of a YAML config at once
(cameras, test patterns, file replays, sensors), keep each alive through
source trouble, and serve metrics, health and status over HTTP.

Each stream runs on its own: a source that fails (device missing, unplugged,
busy) is retried with capped exponential backoff and jitter while the other
streams go on. A stream another daemon publishes (a rolling update's old
pod) is stood by for: this daemon takes it over, continuing its sequence
numbers, as soon as the other stops or dies.

HTTP (--listen, default from the config, 0.0.0.0:9470):
  /metrics  Prometheus text format (camux_frames_published_total{stream}, ...)
  /healthz  200 while the daemon's loop runs
  /readyz   200 when every required stream publishes or stands by
  /status   JSON: every stream's state, format, counters, readers, last error

Signals: SIGTERM or SIGINT stop every stream cleanly (rings are marked
stopped, so a standby daemon takes over at once). The config is reloaded
when its file changes (a ConfigMap update, which swaps a symlink, or an
edit) and on SIGHUP: only streams whose config changed restart, and a
config that does not validate is rejected (logged) while the running one
stays. --dir and --listen changes need a restart.

Prints one JSON line to stdout once serving:
  {\"event\":\"started\",\"listen\":\"<addr>\",\"dir\":\"<dir>\",\"streams\":[...]}
and logs (text or JSON, --log-format) to stderr.

Exit status: 0 after a clean stop, 1 on a bad config or an HTTP address in
use, 2 on a usage error.

Examples:
  camux daemon --config examples/daemon.yaml --dir /tmp/camux --listen 127.0.0.1:9470
  camux daemon --check-config /etc/camux/daemon.yaml";

/// Run every stream of a config, supervised, with HTTP metrics, health and status.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DaemonArgs {
    /// The YAML config (what the ConfigMap holds).
    #[arg(long, value_name = "FILE", required_unless_present = "check_config")]
    pub config: Option<PathBuf>,
    /// Validate FILE and exit: 0 and a summary if it is good, 1 and the
    /// first error (file:line:column: field: what is allowed) if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,
    /// Ring directory (overrides the config's `dir`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// HTTP address (overrides the config's `listen`), e.g. 127.0.0.1:9470
    /// or 127.0.0.1:0 for any free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format (overrides the config's `log_format`).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

/// Runs `camux daemon`.
pub fn run(args: DaemonArgs) -> anyhow::Result<Status> {
    if let Some(path) = &args.check_config {
        return check(path);
    }
    // Signals arrive on a signalfd, so every thread must block them: block
    // first, before any thread is spawned (threads inherit the mask) and
    // before the config is read, so a SIGTERM during startup is a clean
    // stop, not the default death.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().context("cannot block signals")?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("cannot create a signalfd")?;
    let path = args.config.clone().expect("clap requires --config");
    let mut cfg = config::load(&path)?;
    overrides(&mut cfg, &args);
    init_logs(cfg.log_format);

    // Config changes: a ConfigMap update swaps a symlink in the config's
    // directory (kubelet's `..data` rename), an editor renames or rewrites
    // the file: watch the directory and reload when the text changed.
    let watch = ConfigWatch::new(&path);

    let board = Arc::new(Board::new());
    let http = HttpServer::start(cfg.listen, board.clone())
        .with_context(|| format!("cannot serve HTTP on {}", cfg.listen))?;
    let mut supervisor = Supervisor::new(board.clone(), cfg.dir.clone());
    let applied = supervisor.apply(&cfg);
    tracing::info!(
        listen = %http.local_addr(),
        dir = %cfg.dir.display(),
        streams = ?applied.added,
        "camux daemon started"
    );
    {
        let mut out = std::io::stdout().lock();
        json::emit(
            &mut out,
            &serde_json::json!({
                "event": "started",
                "listen": http.local_addr().to_string(),
                "dir": cfg.dir,
                "streams": applied.added,
            }),
        )?;
    }

    let mut last_text = std::fs::read(&path).unwrap_or_default();
    loop {
        board.tick();
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = &watch {
            fds.push(PollFd::new(w.inotify.as_fd(), PollFlags::POLLIN));
        }
        // The timeout only paces the liveness tick /healthz reads.
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll on the signalfd"),
        }
        if let Some(w) = &watch {
            if w.changed() {
                // Only when the text changed: the directory sees other events too.
                let text = std::fs::read(&path).unwrap_or_default();
                if text != last_text {
                    last_text = text;
                    tracing::info!(config = %path.display(), "config file changed");
                    reload(&path, &args, &mut cfg, &mut supervisor);
                }
            }
        }
        let mut stop = false;
        while let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => {
                    last_text = std::fs::read(&path).unwrap_or_default();
                    reload(&path, &args, &mut cfg, &mut supervisor)
                }
                Ok(s) => {
                    tracing::info!(signal = %s, "stopping every stream");
                    stop = true;
                }
                Err(_) => {}
            }
        }
        if stop {
            break;
        }
    }
    supervisor.shutdown();
    http.shutdown();
    tracing::info!("camux daemon stopped");
    Ok(Status::Success)
}

/// An inotify watch on the config file's directory.
struct ConfigWatch {
    inotify: Inotify,
}

impl ConfigWatch {
    /// `None` (with a warning) if the directory cannot be watched: SIGHUP
    /// still reloads.
    fn new(path: &Path) -> Option<ConfigWatch> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let watch = || -> nix::Result<ConfigWatch> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            inotify.add_watch(
                &dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_ATTRIB,
            )?;
            Ok(ConfigWatch { inotify })
        };
        match watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "cannot watch the config directory; reload with SIGHUP");
                None
            }
        }
    }

    /// Drains pending events; true if there were any.
    fn changed(&self) -> bool {
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
        }
        any
    }
}

fn overrides(cfg: &mut DaemonConfig, args: &DaemonArgs) {
    if let Some(dir) = &args.dir {
        cfg.dir = dir.clone();
    }
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    match args.log_format.as_deref() {
        Some("json") => cfg.log_format = LogFormat::Json,
        Some("text") => cfg.log_format = LogFormat::Text,
        _ => {}
    }
}

/// SIGHUP: load the config again; a bad one is logged and the running one stays.
fn reload(path: &Path, args: &DaemonArgs, cfg: &mut DaemonConfig, supervisor: &mut Supervisor) {
    match config::load(path) {
        Ok(mut new) => {
            overrides(&mut new, args);
            if new.dir != cfg.dir || new.listen != cfg.listen {
                tracing::warn!(
                    "dir and listen changes need a restart; keeping {} and {}",
                    cfg.dir.display(),
                    cfg.listen
                );
                new.dir = cfg.dir.clone();
                new.listen = cfg.listen;
            }
            let applied = supervisor.apply(&new);
            tracing::info!(
                added = ?applied.added,
                restarted = ?applied.restarted,
                removed = ?applied.removed,
                unchanged = ?applied.unchanged,
                "config reloaded"
            );
            *cfg = new;
        }
        Err(e) => tracing::error!(error = %e, "config rejected; the running config stays"),
    }
}

fn check(path: &Path) -> anyhow::Result<Status> {
    let cfg = config::load(path)?;
    let names: Vec<String> = cfg
        .streams
        .iter()
        .map(|s| format!("{} ({})", s.name, s.source_kind()))
        .collect();
    println!(
        "{}: ok: {} stream{}: {}; dir {}, listen {}",
        path.display(),
        cfg.streams.len(),
        if cfg.streams.len() == 1 { "" } else { "s" },
        names.join(", "),
        cfg.dir.display(),
        cfg.listen
    );
    Ok(Status::Success)
}

pub(crate) fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, not in a pod's log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
