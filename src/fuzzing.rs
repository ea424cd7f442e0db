//! Entry points for the fuzz targets in `fuzz/` beyond the ring's (those
//! are in [`ring::fuzzing`](crate::ring::fuzzing)); not a stable API.
//!
//! **For fuzzing only.** Each function takes arbitrary bytes, runs a parser
//! on them and checks a property, panicking when it breaks (the fuzzer's
//! finding). Rejections are expected outcomes, not findings. They also run
//! as plain tests at the bottom of this file.

use crate::source::sensor::MAX_RECORD_BYTES;
use crate::source::{Framed, Framing, RecordFramer};

/// One framed event, owned, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Record(Vec<u8>),
    Oversized(u64),
    Truncated(usize),
}

fn own(e: Framed<'_>) -> Event {
    match e {
        Framed::Record(r) => Event::Record(r.to_vec()),
        Framed::Oversized { len } => Event::Oversized(len),
        Framed::Truncated { len } => Event::Truncated(len),
    }
}

/// Frames `input` fed in chunks of the sizes `chunks` yields (cycled),
/// pulling every event after each push, as a source does.
fn frame_in_chunks(
    framing: Framing,
    input: &[u8],
    chunks: &[usize],
) -> (Vec<Event>, crate::source::FramerStats) {
    let mut framer = RecordFramer::new(framing).expect("valid framing");
    let mut events = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let want = chunks[i % chunks.len()].clamp(1, rest.len());
        i += 1;
        let mut chunk = &rest[..want];
        rest = &rest[want..];
        // A push may take less than offered (the framer holds one pending
        // event at a time): pull, then offer the rest again.
        let mut stuck = 0;
        while !chunk.is_empty() {
            let taken = framer.push(chunk);
            chunk = &chunk[taken..];
            let mut pulled = false;
            while let Some(e) = framer.pull() {
                events.push(own(e));
                pulled = true;
            }
            if taken == 0 && !pulled {
                stuck += 1;
                assert!(
                    stuck < 2,
                    "the framer took nothing and yielded nothing: it would spin"
                );
            } else {
                stuck = 0;
            }
        }
    }
    if let Some(e) = framer.finish() {
        events.push(own(e));
    }
    assert!(framer.pull().is_none(), "an event after finish");
    (events, framer.stats())
}

/// The sensor record framer: for a framing and a byte stream chosen by
/// the input, framing is independent of how the stream is cut into reads
/// (one read, byte by byte, and a fuzzer-chosen chunking agree event for
/// event and in their counts), every record fits the framing, the counts
/// match the events, and for fixed-size records nothing is lost:
/// records and the truncated tail add up to the input.
pub fn sensor_framer(data: &[u8]) {
    let [kind, size, cut, input @ ..] = data else {
        return;
    };
    let n = 1 + usize::from(*size) % 64;
    let framing = if kind & 1 == 0 {
        Framing::Fixed(n)
    } else {
        Framing::Lines { max_bytes: n }
    };
    assert!(n <= MAX_RECORD_BYTES);
    let chunking: Vec<usize> = (0..8)
        .map(|i| 1 + usize::from(cut.rotate_left(i) % 17))
        .collect();

    let (whole, stats) = frame_in_chunks(framing, input, &[usize::MAX]);
    let (bytewise, stats_b) = frame_in_chunks(framing, input, &[1]);
    let (chunked, stats_c) = frame_in_chunks(framing, input, &chunking);
    assert_eq!(whole, bytewise, "one read vs byte by byte, {framing:?}");
    assert_eq!(
        whole, chunked,
        "one read vs chunks {chunking:?}, {framing:?}"
    );
    assert_eq!(
        (stats, stats),
        (stats_b, stats_c),
        "counts depend on the chunking"
    );

    let mut record_bytes = 0u64;
    let (mut records, mut oversized, mut truncated) = (0u64, 0u64, 0u64);
    for (i, e) in whole.iter().enumerate() {
        match e {
            Event::Record(r) => {
                records += 1;
                record_bytes += r.len() as u64;
                match framing {
                    Framing::Fixed(n) => assert_eq!(r.len(), n, "a fixed record of the wrong size"),
                    Framing::Lines { max_bytes } => {
                        assert!(
                            !r.is_empty() && r.len() <= max_bytes,
                            "line record of {} bytes",
                            r.len()
                        );
                        assert!(!r.contains(&b'\n'), "a newline inside a line record");
                    }
                }
            }
            Event::Oversized(len) => {
                oversized += 1;
                assert!(matches!(framing, Framing::Lines { max_bytes } if *len > max_bytes as u64));
            }
            Event::Truncated(len) => {
                truncated += 1;
                assert_eq!(i + 1, whole.len(), "truncation only at the end");
                assert!(*len > 0 && *len <= n + 1, "truncated tail of {len} bytes");
            }
        }
    }
    assert_eq!(
        (
            stats.records,
            stats.record_bytes,
            stats.oversized,
            stats.truncated
        ),
        (records, record_bytes, oversized, truncated),
        "stats vs events"
    );
    if let Framing::Fixed(n) = framing {
        let tail = match whole.last() {
            Some(Event::Truncated(len)) => *len,
            _ => 0,
        };
        assert_eq!(
            records as usize * n + tail,
            input.len(),
            "fixed framing lost bytes"
        );
    }
}

/// The daemon config parser: any text is accepted or refused, never a
/// panic. A refusal is located: a line and column inside the text (the
/// column may be one past a line's end) and a message. An accepted
/// config serializes to YAML that parses back to the same config.
#[cfg(feature = "config")]
pub fn daemon_config(data: &[u8]) {
    use crate::daemon::config::{parse, ConfigError};
    use std::path::Path;

    let text = String::from_utf8_lossy(data);
    match parse(&text, Path::new("fuzz.yaml")) {
        Err(ConfigError::Invalid {
            line,
            column,
            message,
            ..
        }) => {
            let lines = text.split('\n').count();
            assert!(
                line >= 1 && line <= lines + 1,
                "line {line} of {lines}: {message}"
            );
            assert!(column >= 1, "column {column}: {message}");
            if let Some(l) = text.split('\n').nth(line - 1) {
                let chars = l.chars().count();
                assert!(
                    column <= chars + 2,
                    "column {column} of a {chars}-character line: {message}"
                );
            }
            assert!(
                !message.trim().is_empty(),
                "an empty message at {line}:{column}"
            );
        }
        Err(e) => panic!("parse refused with a non-location error: {e}"),
        Ok(config) => {
            let yaml = serde_yaml_ng::to_string(&config).expect("a config serializes");
            match parse(&yaml, Path::new("again.yaml")) {
                Ok(again) => assert_eq!(again, config, "round trip changed the config:\n{yaml}"),
                Err(e) => panic!("the serialized config is refused: {e}\n{yaml}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_entry_point_on_samples() {
        for data in [
            &b""[..],
            b"\x00\x03\x05abcdefgh",
            b"\x01\x03\x07ab\ncdef\n\n\r\nxy\r\nz",
            b"\x01\x00\x01\n\n\na\n\rb",
            b"\x00\x3f\xffxyz",
        ] {
            sensor_framer(data);
        }
    }

    #[cfg(feature = "config")]
    #[test]
    fn config_entry_point_on_samples() {
        for text in [
            "",
            "streams: []\n",
            "streams:\n  - { name: cam0, source: { type: synthetic } }\n",
            include_str!("../examples/daemon.yaml"),
            "streams:\n  - name: cam0\n    source: { type: synthetic, fps: -1 }\n",
            "\u{feff}: [",
            "dir: /x\nlisten: nope\n",
        ] {
            daemon_config(text.as_bytes());
        }
    }
}
