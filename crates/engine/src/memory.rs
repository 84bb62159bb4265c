//! The process's resident memory, for the run report (Linux `/proc`; `None` elsewhere).

/// Peak resident set size (VmHWM) in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak to the current resident size (writing 5 to `/proc/self/clear_refs`), so that
/// the next reading is the peak of what runs in between. Ignored where unsupported.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_grows_with_an_allocation_and_resets() {
        let Some(before) = super::peak_rss_bytes() else {
            return;
        };
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let during = super::peak_rss_bytes().unwrap();
        assert!(during >= before + (60 << 20), "{before} -> {during}");
        drop(big);
        super::reset_peak_rss();
        let after = super::peak_rss_bytes().unwrap();
        assert!(after < during, "{during} -> {after}");
    }
}
