//! The `camux` command line: argument definitions, one module per
//! subcommand, and the small helpers they share.
//!
//! [`Cli`] is the whole interface (clap derive); [`run`] dispatches it and
//! returns the [`Status`] the process exits with. Errors go back to
//! `main`, which prints them with their causes (`{:#}`).

#[cfg(feature = "bench")]
pub mod bench;
pub mod common;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod demo;
pub mod devices;
pub mod inspect;
pub mod json;
pub mod publish;
#[cfg(feature = "reconcile")]
pub mod reconcile;
pub mod record;
pub mod signal;
pub mod stats;
pub mod tail;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const LONG_ABOUT: &str = "\
camux multiplexes camera and sensor streams without copying them.

One producer per stream writes every frame once into a shared-memory ring
file (<DIR>/<STREAM>.ring, on a tmpfs such as /run/camux); any number of
readers in other processes or pods map it read-only and read the same
frames in parallel. A slow reader never slows the producer or the others.

Try it on one machine, nothing to set up:
  camux demo

Or by hand, in two shells:
  camux publish --dir /tmp/camux --stream cam0
  camux tail --dir /tmp/camux cam0 --count 10 --verify
  camux inspect /tmp/camux/cam0.ring

Exit status: 0 ok, 1 error, 2 usage error, 3 verification failed (a torn
or unverifiable frame).";

/// Zero-copy camera stream multiplexer: one producer, many read-only readers.
#[derive(Debug, Parser)]
#[command(name = "camux", version, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a stream into a ring: test pattern, V4L2 camera, file or sensor.
    #[command(long_about = publish::LONG_ABOUT)]
    Publish(publish::PublishArgs),
    /// Read a stream and print one line per frame.
    #[command(long_about = tail::LONG_ABOUT)]
    Tail(tail::TailArgs),
    /// Record a stream into Y4M, MJPEG or raw files with a JSON sidecar of every frame.
    #[command(long_about = record::LONG_ABOUT)]
    Record(record::RecordArgs),
    /// Show a ring file's header, slots, counters and readers.
    #[command(long_about = inspect::LONG_ABOUT)]
    Inspect(inspect::InspectArgs),
    /// Run a publisher and N reader processes and show what they see.
    #[command(long_about = demo::LONG_ABOUT)]
    Demo(demo::DemoArgs),
    /// List V4L2 capture devices with their formats, sizes and rates.
    #[command(long_about = devices::LONG_ABOUT)]
    Devices(devices::DevicesArgs),
    /// Run every stream of a config, supervised, with HTTP metrics, health and status.
    #[cfg(feature = "daemon")]
    #[command(long_about = daemon::LONG_ABOUT)]
    Daemon(daemon::DaemonArgs),
    /// Measure camux against the physical limits and its peers, on this machine.
    #[cfg(feature = "bench")]
    #[command(long_about = bench::LONG_ABOUT)]
    Bench(bench::BenchArgs),
    /// The DaemonSet's sidecar: node labels from stream health, eviction of consumers of dead streams.
    #[cfg(feature = "reconcile")]
    #[command(long_about = reconcile::LONG_ABOUT)]
    Reconcile(reconcile::ReconcileArgs),
}

/// What a build without the `v4l2` feature says when asked for a camera.
#[cfg_attr(feature = "v4l2", allow(dead_code))]
pub const NO_V4L2: &str = "this camux was built without V4L2 support: rebuild with \
`cargo build --release --features v4l2` (needs libclang-dev), or use the release binary or \
container image, which have it";

/// How a command ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0: done.
    Success,
    /// Exit 1: failed (an error already reported, a timeout, a reader died).
    Failed,
    /// Exit 3: a frame failed verification (torn or unverifiable).
    VerifyFailed,
}

/// Exit status of an error `main` prints. (2, for usage errors, is clap's.)
pub const EXIT_ERROR: u8 = 1;

impl Status {
    /// The exit status: 0, 1 or 3 (2 is clap's, for usage errors).
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failed => EXIT_ERROR,
            Status::VerifyFailed => 3,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s.code())
    }
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Publish(args) => publish::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Record(args) => record::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Devices(args) => devices::run(args),
        #[cfg(feature = "daemon")]
        Command::Daemon(args) => daemon::run(args),
        #[cfg(feature = "reconcile")]
        Command::Reconcile(args) => reconcile::run(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench::run(args),
    }
}

/// Whether `err` is a write to a closed pipe (`camux tail | head`): not a
/// failure worth a message, as in ripgrep.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use camux::format::FourCc;
    use clap::CommandFactory;
    use std::path::PathBuf;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("camux").chain(args.iter().copied()))
    }

    #[test]
    fn the_help_examples_raw_format_parses() {
        // `publish --help` teaches `--format RAW`: it must work as written.
        let Command::Publish(p) = parse(&["publish", "--stream", "imu", "--format", "RAW"])
            .unwrap()
            .command
        else {
            panic!("not publish")
        };
        assert_eq!(p.format, Some(FourCc::RAW));
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn publish_defaults_and_options() {
        let Command::Publish(p) = parse(&["publish", "--stream", "cam0"]).unwrap().command else {
            panic!("not publish")
        };
        assert_eq!(p.dir, PathBuf::from("/run/camux"));
        assert_eq!(p.stream, "cam0");
        assert_eq!(
            (p.width, p.height, p.fps, p.format, p.v4l2.clone()),
            (None, None, None, None, None)
        );
        let s = p.synthetic().unwrap();
        assert_eq!(
            (
                s.config().width,
                s.config().height,
                s.config().fps,
                s.config().fourcc
            ),
            (1280, 720, 30.0, FourCc::YUYV)
        );
        assert_eq!((p.slots, p.hold_limit, p.hold_timeout_ms), (8, 4, 5000));
        assert_eq!(
            (p.frames, p.seconds, p.flat, p.wait_lock),
            (None, None, false, false)
        );

        let Command::Publish(p) = parse(&[
            "publish",
            "--dir",
            "/tmp/x",
            "--stream",
            "s",
            "--width",
            "64",
            "--height",
            "48",
            "--fps",
            "29.97",
            "--format",
            "nv12",
            "--slots",
            "16",
            "--hold-limit",
            "2",
            "--hold-timeout-ms",
            "100",
            "--frames",
            "10",
            "--seconds",
            "2.5",
            "--flat",
            "--wait-lock",
        ])
        .unwrap()
        .command
        else {
            panic!("not publish")
        };
        assert_eq!(p.dir, PathBuf::from("/tmp/x"));
        assert_eq!(p.format, Some(FourCc::NV12));
        assert_eq!(p.fps, Some(29.97));
        assert_eq!((p.slots, p.hold_limit, p.hold_timeout_ms), (16, 2, 100));
        assert_eq!(p.frames, Some(10));
        assert_eq!(p.seconds, Some(Duration::from_millis(2500)));
        assert!(p.flat && p.wait_lock);
    }

    #[test]
    fn tail_options() {
        let Command::Tail(t) = parse(&["tail", "cam0"]).unwrap().command else {
            panic!("not tail")
        };
        assert_eq!(t.dir, PathBuf::from("/run/camux"));
        assert_eq!(
            (t.count, t.latest, t.verify, t.json),
            (None, false, false, false)
        );
        assert_eq!((t.timeout_ms, t.hold_ms, t.keep), (None, 0, 0));
        let Command::Tail(t) = parse(&[
            "tail",
            "--dir",
            "/d",
            "cam1",
            "--count",
            "10",
            "--latest",
            "--verify",
            "--json",
            "--timeout-ms",
            "500",
            "--hold-ms",
            "20",
            "--keep",
            "3",
        ])
        .unwrap()
        .command
        else {
            panic!("not tail")
        };
        assert_eq!(t.stream, "cam1");
        assert_eq!(
            (t.count, t.latest, t.verify, t.json),
            (Some(10), true, true, true)
        );
        assert_eq!((t.timeout_ms, t.hold_ms, t.keep), (Some(500), 20, 3));
    }

    #[test]
    fn inspect_and_demo() {
        let Command::Inspect(i) = parse(&["inspect", "/run/camux/a.ring", "--json"])
            .unwrap()
            .command
        else {
            panic!("not inspect")
        };
        assert_eq!(i.ring, PathBuf::from("/run/camux/a.ring"));
        assert!(i.json);
        let Command::Demo(d) = parse(&["demo"]).unwrap().command else {
            panic!("not demo")
        };
        assert_eq!(
            (d.readers, d.seconds, d.json),
            (3, Duration::from_secs(5), false)
        );
        assert_eq!((d.source.width, d.source.height), (1280, 720));
        let Command::Demo(d) = parse(&["demo", "--readers", "4", "--seconds", "1", "--json"])
            .unwrap()
            .command
        else {
            panic!("not demo")
        };
        assert_eq!(
            (d.readers, d.seconds, d.json),
            (4, Duration::from_secs(1), true)
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        for bad in [
            &["publish"][..],                                 // --stream missing
            &["publish", "--stream", "s", "--fps", "0"],      // bad rate
            &["publish", "--stream", "s", "--format", "yuv"], // bad FourCC
            &["publish", "--stream", "s", "--seconds", "-1"], // bad duration
            &["tail"],                                        // stream missing
            &["tail", "s", "--count", "x"],
            &["demo", "--readers", "0"],
            &["inspect"],
            &["frobnicate"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let e = parse(&["publish", "--stream", "s", "--format", "yuv"]).unwrap_err();
        assert!(e.to_string().contains("invalid FourCC"), "{e}");
    }

    #[test]
    fn help_and_version_exit_0() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["tail", "--help"],
            &["demo", "-h"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 0, "{args:?}");
        }
        let long = Cli::command()
            .find_subcommand_mut("publish")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(long.contains("Example"), "{long}");
    }

    #[test]
    fn statuses() {
        assert_eq!(Status::Success.code(), 0);
        assert_eq!(Status::Failed.code(), 1);
        assert_eq!(Status::VerifyFailed.code(), 3);
        let e = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("no")));
    }
}
