//! What the harness reads from the kernel: CPU time of a process (its own
//! `getrusage`, or another process's scheduler counters), private memory,
//! and the machine's description.

use nix::sys::resource::{getrusage, UsageWho};
use nix::time::{clock_gettime, ClockId};
use serde::Serialize;
use std::path::Path;

/// CPU time this process has used so far, two ways (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    /// `getrusage(RUSAGE_SELF)` user + system time (every thread, also
    /// those that ended).
    pub rusage_ns: u64,
    /// CLOCK_PROCESS_CPUTIME_ID: the scheduler's exact run time.
    pub clock_ns: u64,
}

fn timeval_ns(tv: nix::sys::time::TimeVal) -> u64 {
    (tv.tv_sec().max(0) as u64) * 1_000_000_000 + (tv.tv_usec().max(0) as u64) * 1_000
}

impl Cpu {
    /// This process's CPU time now.
    pub fn now() -> Cpu {
        let rusage_ns = getrusage(UsageWho::RUSAGE_SELF)
            .map(|u| timeval_ns(u.user_time()) + timeval_ns(u.system_time()))
            .unwrap_or(0);
        let clock_ns = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        Cpu {
            rusage_ns,
            clock_ns,
        }
    }

    /// CPU time from `self` to `later`.
    pub fn until(self, later: Cpu) -> Cpu {
        Cpu {
            rusage_ns: super::hist::cpu_between(self.rusage_ns, later.rusage_ns),
            clock_ns: super::hist::cpu_between(self.clock_ns, later.clock_ns),
        }
    }
}

/// The run time of every thread of process `pid` (ns), from
/// `/proc/PID/task/*/schedstat` (first field: time on the CPU). For
/// processes the harness did not write (gst-launch-1.0); threads that
/// already ended are not counted.
pub fn schedstat_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Private memory of process `pid` (or `self`) in KiB: `Private_Clean +
/// Private_Dirty` of `/proc/PID/smaps_rollup`, i.e. its resident memory
/// beyond pages it shares with other processes (a ring it maps and others
/// map too is shared; its own heap, stack and copies are private).
pub fn private_kib(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_private_kib(&text)
}

/// The `Private_Clean + Private_Dirty` sum of an smaps_rollup text.
pub fn parse_private_kib(text: &str) -> Option<u64> {
    let mut total = None;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("Private_Clean:")
            .or_else(|| line.strip_prefix("Private_Dirty:"))
        {
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            total = Some(total.unwrap_or(0) + kib);
        }
    }
    total
}

/// The machine a run was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Vendor, family, model and stepping of /proc/cpuinfo: a VM's model
    /// name is often just "AMD EPYC", and two hosts behind the same name
    /// can be different generations with different caches.
    pub cpu_id: Option<String>,
    /// CPU 0's caches as sysfs lists them (level, type, size, and the CPUs
    /// that share each), e.g. `L1d 32K, L1i 32K, L2 1024K, L3 32768K (0-1)`.
    pub caches: Option<String>,
    /// CPUs this process may run on.
    pub cores: usize,
    /// Kernel release.
    pub kernel: Option<String>,
    /// MemTotal in MiB.
    pub memory_mib: Option<u64>,
    /// Whether /proc/cpuinfo says this is a virtual machine.
    pub hypervisor: bool,
    /// Where the rings and shared pages lived, with its file system.
    pub shm_dir: String,
    /// The camux version that ran the bench.
    pub camux_version: &'static str,
    /// `gst-launch-1.0 --version`'s GStreamer line, when installed.
    pub gstreamer: Option<String>,
    /// The iceoryx2 crate version built in, when the feature is on.
    pub iceoryx2: Option<&'static str>,
    /// 1-minute load average when the run started (another tenant's
    /// compile shows here).
    pub loadavg_at_start: Option<f64>,
    /// When the run started (UTC, ISO 8601).
    pub started_utc: String,
}

/// Describes this machine.
pub fn machine(
    shm_dir: &Path,
    gstreamer: Option<String>,
    iceoryx2: Option<&'static str>,
) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let cpu_id = match (field("vendor_id"), field("cpu family"), field("model")) {
        (Some(v), Some(f), Some(m)) => Some(format!(
            "{v} family {f} model {m} stepping {}",
            field("stepping").unwrap_or_else(|| "?".into())
        )),
        _ => None,
    };
    let cpu_model = field("model name");
    let hypervisor =
        field("flags").is_some_and(|f| f.split_whitespace().any(|f| f == "hypervisor"));
    let memory_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib / 1024)
    });
    let loadavg_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    Machine {
        cpu_model,
        cpu_id,
        caches: caches(Path::new("/sys/devices/system/cpu/cpu0/cache")),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        memory_mib,
        hypervisor,
        shm_dir: format!("{} [{}]", shm_dir.display(), fs_type(shm_dir)),
        camux_version: env!("CARGO_PKG_VERSION"),
        gstreamer,
        iceoryx2,
        loadavg_at_start,
        started_utc: utc_now(),
    }
}

/// CPU 0's caches from sysfs (`dir` is its `cache` directory), smallest
/// level first; the CPUs that share a cache are given when more than one
/// does. `None` when sysfs lists none.
pub fn caches(dir: &Path) -> Option<String> {
    let read = |d: &Path, f: &str| {
        std::fs::read_to_string(d.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let d = e.ok()?.path();
            if !d.file_name()?.to_str()?.starts_with("index") {
                return None;
            }
            let level = read(&d, "level")?;
            let kind = match read(&d, "type")?.as_str() {
                "Data" => "d",
                "Instruction" => "i",
                _ => "",
            };
            let size = read(&d, "size")?;
            let shared = read(&d, "shared_cpu_list").unwrap_or_default();
            let shared = if shared.contains(['-', ',']) {
                format!(" ({shared})")
            } else {
                String::new()
            };
            Some((
                format!("{level}{kind}"),
                format!("L{level}{kind} {size}{shared}"),
            ))
        })
        .collect();
    found.sort();
    (!found.is_empty()).then(|| {
        found
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The file system type of `path`, from /proc/self/mounts (the longest
/// mount point that prefixes it).
pub fn fs_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let p = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            p.starts_with(mnt).then(|| (mnt.len(), ty.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or("unknown".into(), |(_, ty)| ty)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_of(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days,
/// proleptic Gregorian).
pub fn utc_of(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_memory_is_clean_plus_dirty() {
        let text = "55d0c0a00000-7ffd1c9f5000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:                8192 kB\n\
                    Pss:                5000 kB\n\
                    Shared_Clean:       3000 kB\n\
                    Shared_Dirty:       1000 kB\n\
                    Private_Clean:       200 kB\n\
                    Private_Dirty:      3992 kB\n";
        assert_eq!(parse_private_kib(text), Some(4192));
        assert_eq!(parse_private_kib("Rss: 1 kB\n"), None);
        assert!(private_kib("self").unwrap() > 0);
    }

    #[test]
    fn caches_are_listed_smallest_first_with_sharing() {
        let dir = tempfile::tempdir().unwrap();
        for (i, level, kind, size, shared) in [
            (3, "3", "Unified", "32768K", "0-1"),
            (0, "1", "Data", "32K", "0"),
            (2, "2", "Unified", "1024K", "0"),
            (1, "1", "Instruction", "32K", "0"),
        ] {
            let d = dir.path().join(format!("index{i}"));
            std::fs::create_dir(&d).unwrap();
            for (f, v) in [("level", level), ("type", kind), ("size", size)] {
                std::fs::write(d.join(f), format!("{v}\n")).unwrap();
            }
            std::fs::write(d.join("shared_cpu_list"), shared).unwrap();
        }
        std::fs::create_dir(dir.path().join("uevent-not-an-index")).unwrap();
        assert_eq!(
            caches(dir.path()).as_deref(),
            Some("L1d 32K, L1i 32K, L2 1024K, L3 32768K (0-1)")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(caches(empty.path()), None);
        assert_eq!(caches(&empty.path().join("missing")), None);
    }

    #[test]
    fn own_cpu_goes_up() {
        let a = Cpu::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let d = a.until(Cpu::now());
        assert!(d.clock_ns > 0, "{d:?} {x}");
        assert_eq!(a.until(a), Cpu::default());
        assert!(schedstat_ns(std::process::id()) > 0);
    }

    #[test]
    fn dates() {
        assert_eq!(utc_of(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_of(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_of(1_796_083_200 + 3661), "2026-12-01T01:01:01Z");
    }
}
