//! Peak memory of a stage on the CPU: the process's resident-set high-water mark (Linux
//! `VmHWM`), reset before the stage by writing `5` to `/proc/self/clear_refs`. Stages run one
//! after another, so the mark after a stage is that stage's peak. It is the whole process's RSS
//! (models included), not an allocation count; elsewhere, or when the reset is not permitted,
//! nothing is reported rather than a wrong number. GPU peaks are the GPU lease's job.

/// Starts a measurement: `true` when the high-water mark was reset and a later
/// [`peak_rss_bytes`] belongs to this stage.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The resident-set high-water mark in bytes, when the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Measures `f`'s peak RSS: `(result, Some(bytes))` when measurable.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let armed = reset_peak();
    let out = f();
    (out, if armed { peak_rss_bytes() } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_grows_with_a_big_allocation_when_measurable() {
        let (_, baseline) = measure(|| ());
        let (len, peak) = measure(|| {
            let block = vec![1u8; 64 << 20];
            std::hint::black_box(&block);
            block.len()
        });
        assert_eq!(len, 64 << 20);
        if let (Some(before), Some(after)) = (baseline, peak) {
            assert!(after >= before + (48 << 20), "{before} -> {after}");
        }
    }
}
