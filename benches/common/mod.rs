//! What the bench targets share about the machine they run on (each target
//! includes this file as a module).

/// Model name, family/model/stepping and L3 size of CPU 0: a VM's model
/// name alone ("AMD EPYC") does not tell two host generations apart, and
/// the figures here move with the host's caches.
pub fn cpu_id() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .take_while(|l| !l.trim().is_empty())
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map_or("?".to_string(), |(_, v)| v.trim().to_string())
    };
    let l3 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size")
        .map_or("?".to_string(), |s| s.trim().to_string());
    format!(
        "{}, family {} model {} stepping {}, L3 {l3}, {} CPUs",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("stepping"),
        std::thread::available_parallelism().map_or(1, usize::from)
    )
}

/// The all-CPU tick counters of /proc/stat's first line: user nice system
/// idle iowait irq softirq steal ...
pub fn cpu_ticks() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    Some(
        stat.lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect(),
    )
}
