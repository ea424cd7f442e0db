//! `camux devices`: the V4L2 capture devices of this machine and what they offer.

use super::Status;
use clap::Args;
use std::path::PathBuf;

/// The long `--help` text.
pub const LONG_ABOUT: &str = "\
List the V4L2 capture devices of this machine with their formats, frame
sizes and frame rates: what you need to write a stream's config or a
`camux publish --v4l2` command line.

Each device is listed by its node (/dev/videoN) and the stable names udev
made for it (/dev/v4l/by-id/..., /dev/v4l/by-path/...); prefer a stable
name in configs, since node numbers change with plug order. Output and
metadata nodes are left out. A device busy in another process is still
listed (enumerating formats does not need to stream).

Needs a camux built with the `v4l2` cargo feature (the release binary and
the container image are).

Examples:
  camux devices
  camux devices --json | jq '.[0].formats[].fourcc'";

/// List V4L2 capture devices with their formats, sizes and rates.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DevicesArgs {
    /// Print one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where device nodes live (for tests and chroots).
    #[arg(long, value_name = "DIR", default_value = "/dev", hide = true)]
    pub dev: PathBuf,
}

/// Runs `camux devices`.
#[cfg(feature = "v4l2")]
pub fn run(args: DevicesArgs) -> anyhow::Result<Status> {
    use super::json;
    use camux::source::v4l2::list_devices;
    use serde_json::json;
    use std::io::Write;
    let devices = list_devices(&args.dev);
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<_> = devices
            .iter()
            .map(|d| {
                json!({
                    "path": d.path,
                    "aliases": d.aliases,
                    "driver": d.identity.driver,
                    "card": d.identity.card,
                    "bus": d.identity.bus,
                    "error": d.error,
                    "formats": d.formats.iter().map(|f| json!({
                        "fourcc": f.fourcc.to_string(),
                        "description": f.description,
                        "compressed": f.compressed,
                        "sizes": f.sizes.iter().map(|s| json!({
                            "width": s.width,
                            "height": s.height,
                            "range": s.range.map(|(a, b, c, d)| json!({
                                "min_width": a, "min_height": b, "max_width": c, "max_height": d,
                            })),
                            "fps": s.fps,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json::emit(&mut out, &list)?;
        return Ok(Status::Success);
    }
    if devices.is_empty() {
        writeln!(out, "no V4L2 capture devices under {}", args.dev.display())?;
        return Ok(Status::Success);
    }
    for d in &devices {
        writeln!(
            out,
            "{}  {} \"{}\" ({})",
            d.path.display(),
            d.identity.driver,
            d.identity.card,
            d.identity.bus
        )?;
        for a in &d.aliases {
            writeln!(out, "  also {}", a.display())?;
        }
        if let Some(e) = &d.error {
            writeln!(out, "  cannot open: {e}")?;
        }
        for f in &d.formats {
            let kind = if f.compressed { ", compressed" } else { "" };
            writeln!(out, "  {} ({}{kind})", f.fourcc, f.description)?;
            for s in &f.sizes {
                let rates: Vec<String> = s.fps.iter().map(|r| format!("{r}")).collect();
                let size = match s.range {
                    Some((a, b, c, d)) => format!("{a}x{b}..{c}x{d}"),
                    None => format!("{}x{}", s.width, s.height),
                };
                writeln!(out, "    {size:<12} {} fps", rates.join(" "))?;
            }
        }
    }
    Ok(Status::Success)
}

/// Runs `camux devices` in a build without V4L2 support: says so.
#[cfg(not(feature = "v4l2"))]
pub fn run(_args: DevicesArgs) -> anyhow::Result<Status> {
    anyhow::bail!("{}", super::NO_V4L2)
}
