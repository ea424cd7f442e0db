//! JSON shapes shared by the subcommands, and line-at-a-time output.

use camux::ring::StreamFormat;
use serde::Serialize;
use std::io::{self, Write};

/// A [`StreamFormat`] as JSON: `{"fourcc":"YUYV","width":1280,...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormatJson {
    /// The four characters of the FourCC (`"RAW "` keeps its padding).
    pub fourcc: String,
    /// Width in pixels (bytes per record for sensor streams).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Planes in use.
    pub num_planes: u32,
    /// Bytes per line of each plane in use.
    pub strides: Vec<u32>,
    /// Offset of each plane in use from the start of the payload.
    pub plane_offsets: Vec<u32>,
    /// Nominal frame rate, `null` when unknown.
    pub fps: Option<f64>,
}

impl From<&StreamFormat> for FormatJson {
    fn from(f: &StreamFormat) -> Self {
        let n = (f.num_planes as usize).min(f.strides.len());
        FormatJson {
            fourcc: f.fourcc.to_string(),
            width: f.width,
            height: f.height,
            num_planes: f.num_planes,
            strides: f.strides[..n].to_vec(),
            plane_offsets: f.plane_offsets[..n].to_vec(),
            fps: fps(f),
        }
    }
}

/// The nominal frame rate of `f`, if it records one.
pub fn fps(f: &StreamFormat) -> Option<f64> {
    (f.fps_num > 0 && f.fps_den > 0).then(|| f64::from(f.fps_num) / f64::from(f.fps_den))
}

/// `YUYV 1280x720`, for human output.
pub fn format_human(f: &StreamFormat) -> String {
    format!("{} {}x{}", f.fourcc, f.width, f.height)
}

/// A p50/p99 pair in microseconds; `null` when there was no sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Writes `value` as one JSON line and flushes it, so that a reader of a
/// pipe sees it at once.
pub fn emit<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes one text line and flushes it.
pub fn line<W: Write>(out: &mut W, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Nanoseconds as fractional milliseconds.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Nanoseconds as fractional microseconds.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use camux::format::{FourCc, FrameLayout};

    #[test]
    fn format_json_lists_planes_in_use() {
        let layout = FrameLayout::packed(FourCc::NV12, 64, 48).unwrap();
        let f = StreamFormat::from_layout(&layout, 30.0);
        let j = serde_json::to_value(FormatJson::from(&f)).unwrap();
        assert_eq!(j["fourcc"], "NV12");
        assert_eq!(j["width"], 64);
        assert_eq!(j["num_planes"], 2);
        assert_eq!(j["strides"], serde_json::json!([64, 64]));
        assert_eq!(j["plane_offsets"], serde_json::json!([0, 64 * 48]));
        assert_eq!(j["fps"], 30.0);
        let raw = StreamFormat::opaque(48);
        let j = serde_json::to_value(FormatJson::from(&raw)).unwrap();
        assert_eq!(j["fourcc"], "RAW ");
        assert!(j["fps"].is_null());
        assert_eq!(format_human(&raw), "RAW  48x1");
    }

    #[test]
    fn emit_writes_one_line() {
        let mut out = Vec::new();
        emit(
            &mut out,
            &Percentiles {
                p50: Some(1.5),
                p99: None,
            },
        )
        .unwrap();
        line(&mut out, "x").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"p50\":1.5,\"p99\":null}\nx\n"
        );
        assert_eq!(ms(1_500_000), 1.5);
        assert_eq!(us(1_500), 1.5);
    }
}
