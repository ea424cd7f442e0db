//! What the harness tells a participant process (a [`Spec`], as JSON on
//! its command line) and what the participant reports back (JSON lines on
//! its stdout).

use super::hist::LatHist;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The systems the harness compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// camux: `Publisher::publish` (copy-in) and `Subscriber` readers.
    Camux,
    /// The real `camux daemon` process publishing one synthetic stream of
    /// the scenario's shape and rate, and `Subscriber` readers: the
    /// daemon's own CPU per frame, with its source's render CPU taken out.
    CamuxDaemon,
    /// Single-thread memcpy of the frame into tmpfs-backed shared memory
    /// (no readers): the producer-side limit.
    LimitMemcpy,
    /// A bare cross-process futex: stamp, store, FUTEX_WAKE; readers in
    /// FUTEX_WAIT. The wake-up latency floor.
    LimitFutex,
    /// A Unix-socket fan-out broker: the producer writes every frame to
    /// every reader's socket.
    SocketBroker,
    /// GStreamer `fdsrc ! rawvideoparse ! shmsink`, read with the shmsrc
    /// protocol.
    Gstreamer,
    /// iceoryx2 publish/subscribe (loan API) with an Event for blocking
    /// readers.
    Iceoryx2,
}

impl System {
    /// The name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Camux => "camux",
            System::CamuxDaemon => "camux-daemon",
            System::LimitMemcpy => "limit-memcpy",
            System::LimitFutex => "limit-futex",
            System::SocketBroker => "socket-broker",
            System::Gstreamer => "gstreamer",
            System::Iceoryx2 => "iceoryx2",
        }
    }
}

/// Paced at a frame rate, or as fast as the producer can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A frame every 1/fps s.
    Paced,
    /// Back to back.
    Flat,
}

/// How readers wait for the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// Sleep in the kernel (futex, socket read, event).
    Block,
    /// Poll without sleeping.
    Spin,
}

/// What a reader does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Touch {
    /// Reads the metadata (index, timestamp) only.
    Meta,
    /// Also reads one byte of every 64-byte cache line of the payload.
    All,
}

/// The pixel formats of the scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pixels {
    /// Opaque bytes (a sensor record).
    #[serde(rename = "RAW")]
    Raw,
    /// YUYV 4:2:2, 2 bytes per pixel.
    #[serde(rename = "YUYV")]
    Yuyv,
    /// NV12 4:2:0, 1.5 bytes per pixel.
    #[serde(rename = "NV12")]
    Nv12,
}

/// A frame geometry the scenarios use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Pixel format.
    pub fourcc: Pixels,
    /// Width in pixels (bytes for RAW).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Shape {
    /// A 64-byte sensor record.
    pub const RECORD: Shape = Shape {
        fourcc: Pixels::Raw,
        width: 64,
        height: 1,
    };
    /// 640x480 YUYV.
    pub const VGA: Shape = Shape {
        fourcc: Pixels::Yuyv,
        width: 640,
        height: 480,
    };
    /// 1920x1080 YUYV.
    pub const FHD: Shape = Shape {
        fourcc: Pixels::Yuyv,
        width: 1920,
        height: 1080,
    };
    /// 3840x2160 NV12.
    pub const UHD: Shape = Shape {
        fourcc: Pixels::Nv12,
        width: 3840,
        height: 2160,
    };

    /// Bytes per frame.
    pub fn bytes(self) -> usize {
        let px = self.width as usize * self.height as usize;
        match self.fourcc {
            Pixels::Yuyv => px * 2,
            Pixels::Nv12 => px * 3 / 2,
            Pixels::Raw => px,
        }
    }

    /// `1920x1080 YUYV`, or `64 B` for a record.
    pub fn label(self) -> String {
        match self.fourcc {
            Pixels::Raw => format!("{} B", self.bytes()),
            Pixels::Yuyv => format!("{}x{} YUYV", self.width, self.height),
            Pixels::Nv12 => format!("{}x{} NV12", self.width, self.height),
        }
    }

    /// GStreamer's name of the format (`rawvideoparse format=`).
    pub fn gst_format(self) -> &'static str {
        match self.fourcc {
            Pixels::Yuyv => "yuy2",
            Pixels::Nv12 => "nv12",
            Pixels::Raw => "gray8",
        }
    }
}

/// One measurement: a system, a frame shape, readers, and how they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The group it belongs to (`latency`, `throughput`, ...).
    pub group: String,
    /// Which system.
    pub system: System,
    /// Frame geometry.
    pub shape: Shape,
    /// Reader processes.
    pub readers: u32,
    /// Paced or flat out.
    pub mode: Mode,
    /// Frames per second when paced.
    pub fps: f64,
    /// Blocking or spinning readers.
    pub wait: Wait,
    /// Metadata only or every cache line.
    pub touch: Touch,
    /// Length of the measured window (s).
    pub seconds: f64,
}

impl Scenario {
    /// Warm-up frames before the measured ones (not counted anywhere).
    pub fn warmup(&self) -> u64 {
        match self.mode {
            Mode::Paced => ((self.fps * 0.25).ceil() as u64).max(5),
            Mode::Flat => 100,
        }
    }

    /// `latency/1920x1080 YUYV/paced 60fps/block/meta/N=4`.
    pub fn name(&self) -> String {
        let mode = match self.mode {
            Mode::Paced => format!("paced {}fps", self.fps),
            Mode::Flat => "flat".into(),
        };
        format!(
            "{}/{}/{mode}/{:?}/{:?}/N={}",
            self.group,
            self.shape.label(),
            self.wait,
            self.touch,
            self.readers
        )
        .to_lowercase()
    }
}

/// What a participant process is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The scenario.
    pub scenario: Scenario,
    /// The run's directory on tmpfs (rings, sockets, shared pages).
    pub dir: PathBuf,
    /// A name unique to this scenario (stream / service name).
    pub tag: String,
}

/// What a producer reports when its measured window ends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerReport {
    /// Frames published in the measured window.
    pub frames: u64,
    /// Frames the system refused or dropped on the producer side.
    pub dropped: u64,
    /// Length of the measured window (ns).
    pub window_ns: u64,
    /// CPU of the producing process in the window, getrusage (ns).
    pub cpu_ns: u64,
    /// CPU in the window by CLOCK_PROCESS_CPUTIME_ID (ns; for peers run as
    /// other programs, their threads' scheduler run time).
    pub cpu_clock_ns: u64,
    /// Private memory of the producing process (KiB).
    pub private_kib: Option<u64>,
    /// Of `cpu_ns`, what the producer's frame source cost (ns), when the
    /// producer reports it (the daemon's `source_cpu_ms`): the producer's
    /// own cost is `cpu_ns - source_cpu_ns`.
    #[serde(default)]
    pub source_cpu_ns: Option<u64>,
    /// Anything the reader of the figures should know.
    pub note: Option<String>,
}

/// What a reader reports when it has seen the end marker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReaderReport {
    /// Measured frames received.
    pub frames: u64,
    /// Publish-to-wake-up latencies of those frames (ns).
    pub latency: LatHist,
    /// CPU of the reader process from its first measured frame to the end
    /// marker, getrusage (ns).
    pub cpu_ns: u64,
    /// The same by CLOCK_PROCESS_CPUTIME_ID (ns).
    pub cpu_clock_ns: u64,
    /// Private memory of the reader process at the end (KiB).
    pub private_kib: Option<u64>,
    /// What the touching reader summed (kept so the reads happen).
    pub checksum: u64,
}

/// One line a participant prints on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Line {
    /// Set up: the harness may go on.
    Ready,
    /// A producer's figures.
    Producer(ProducerReport),
    /// A reader's figures.
    Reader(ReaderReport),
    /// It failed.
    Failed {
        /// Why.
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_names() {
        assert_eq!(Shape::RECORD.bytes(), 64);
        assert_eq!(Shape::VGA.bytes(), 614_400);
        assert_eq!(Shape::FHD.bytes(), 4_147_200);
        assert_eq!(Shape::UHD.bytes(), 12_441_600);
        assert_eq!(Shape::RECORD.label(), "64 B");
        let s = Scenario {
            group: "latency".into(),
            system: System::Camux,
            shape: Shape::FHD,
            readers: 4,
            mode: Mode::Paced,
            fps: 60.0,
            wait: Wait::Block,
            touch: Touch::Meta,
            seconds: 1.0,
        };
        assert_eq!(
            s.name(),
            "latency/1920x1080 yuyv/paced 60fps/block/meta/n=4"
        );
        assert_eq!(s.warmup(), 15);
        let line = serde_json::to_string(&Line::Ready).unwrap();
        assert_eq!(line, r#"{"event":"ready"}"#);
        let back: Spec = serde_json::from_str(
            &serde_json::to_string(&Spec {
                scenario: s.clone(),
                dir: "/x".into(),
                tag: "t".into(),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(back.scenario, s);
    }
}
