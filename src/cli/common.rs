//! Arguments and parsers shared by several subcommands.

use anyhow::Context;
use camux::format::FourCc;
use camux::source::{Synthetic, SyntheticConfig};
use clap::Args;
use std::time::Duration;

/// Where stream files live unless `--dir` says otherwise (the hostPath
/// mounted into every pod).
pub const DEFAULT_DIR: &str = "/run/camux";

/// What the synthetic test-pattern source renders.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct SourceArgs {
    /// Frame width in pixels (for --format RAW: bytes per record).
    #[arg(long, value_name = "W", default_value_t = 1280)]
    pub width: u32,
    /// Frame height in pixels (for --format RAW: records per frame).
    #[arg(long, value_name = "H", default_value_t = 720)]
    pub height: u32,
    /// Frames per second (a positive number, fractions allowed: 0.5, 29.97).
    #[arg(long, value_name = "F", default_value_t = 30.0, value_parser = parse_fps)]
    pub fps: f64,
    /// Pixel format: YUYV, UYVY, NV12, NV21, YU12, GREY, RGB3, BGR3 or RAW
    /// (aliases: i420, gray, rgb24, bgr24, raw).
    #[arg(long, value_name = "F", default_value = "YUYV")]
    pub format: FourCc,
}

impl SourceArgs {
    /// The synthetic source these arguments describe.
    pub fn synthetic(&self) -> anyhow::Result<Synthetic> {
        let config = SyntheticConfig {
            width: self.width,
            height: self.height,
            fourcc: self.format,
            fps: self.fps,
        };
        Synthetic::new(config).with_context(|| {
            format!(
                "cannot make a {} {}x{} test pattern",
                self.format, self.width, self.height
            )
        })
    }
}

/// Parses a frame rate: a finite number above zero.
pub fn parse_fps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a frame rate: give a positive number of frames per second, e.g. 30 or 29.97"
        )),
    }
}

/// Parses a duration: a number of seconds (`5`, `2.5`) or a number with a
/// unit `ms`, `s`, `m` or `h` (`500ms`, `1.5m`). Must be above zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = [("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .iter()
        .find_map(|&(unit, scale)| t.strip_suffix(unit).map(|n| (n, scale)))
        .unwrap_or((t, 1.0));
    let bad = || {
        format!("{s:?} is not a duration: give seconds (5, 2.5) or a number with ms, s, m or h (500ms, 1.5m)")
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(value.is_finite() && value > 0.0) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(100 * 365 * 24 * 3600))
        .ok_or_else(bad)
}

/// The metadata of the synthetic camera's `captured`-th frame, captured now
/// (the synthetic source's driver counter is its capture count).
pub fn captured_now(captured: u64) -> camux::FrameInfo<'static> {
    camux::FrameInfo {
        capture_mono_ns: camux::ring::mono_ns(),
        capture_real_ns: camux::ring::real_ns(),
        driver_seq: captured,
        ..camux::FrameInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 1.5m "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0", "-1", "x", "1d", "nan", "inf", "1e300", "0ms", "ms"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn frame_rates() {
        assert_eq!(parse_fps("30"), Ok(30.0));
        assert_eq!(parse_fps("29.97"), Ok(29.97));
        for bad in ["0", "-5", "nan", "inf", "fast"] {
            assert!(parse_fps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn synthetic_errors_are_explained() {
        let args = SourceArgs {
            width: 4,
            height: 4,
            fps: 30.0,
            format: FourCc::GREY,
        };
        let e = format!("{:#}", args.synthetic().unwrap_err());
        assert!(e.contains("GREY 4x4") && e.contains("stamp"), "{e}");
        let args = SourceArgs {
            format: FourCc::MJPG,
            ..args
        };
        assert!(args.synthetic().is_err());
    }
}
