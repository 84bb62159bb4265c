//! Allocations that may fail: a buffer too large for the machine is an error naming the bytes it
//! needed (and the limit it met when one is known), never an abort.

use ndarray::{Array2, Array4};

/// Allocations from this size on are first compared with the memory limits the process can see.
const CHECKED_FROM: u128 = 64 << 20;

/// An allocation that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocError {
    /// The bytes asked for.
    pub bytes: u128,
    /// The limit that refused it, when one is known: bytes and what it is.
    pub limit: Option<(u64, &'static str)>,
}

impl std::fmt::Display for AllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "needs {} ({} bytes)", human(self.bytes), self.bytes)?;
        match self.limit {
            Some((limit, what)) => write!(f, ", more than the {what} of {}", human(limit.into())),
            None => write!(f, ", more memory than can be allocated"),
        }
    }
}

/// `bytes` in GiB, MiB or KiB with one decimal.
pub fn human(bytes: u128) -> String {
    let b = bytes as f64;
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b >= size as f64 {
            return format!("{:.1} {unit}", b / size as f64);
        }
    }
    format!("{bytes} B")
}

/// The bytes of `dims` elements of `T`, without overflow.
pub fn bytes_of<T>(dims: &[usize]) -> u128 {
    dims.iter()
        .try_fold(std::mem::size_of::<T>() as u128, |acc, &d| {
            acc.checked_mul(d as u128)
        })
        .unwrap_or(u128::MAX)
}

/// A vector of `len` copies of `value`.
///
/// # Errors
/// When the memory cannot be had: larger than a known limit, or refused by the allocator.
pub fn filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>, AllocError> {
    let bytes = bytes_of::<T>(&[len]);
    if bytes >= CHECKED_FROM {
        if let Some(limit) = memory_limit().filter(|(l, _)| u128::from(*l) < bytes) {
            return Err(AllocError {
                bytes,
                limit: Some(limit),
            });
        }
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| AllocError { bytes, limit: None })?;
    v.resize(len, value);
    Ok(v)
}

/// A `d0 x d1 x d2 x d3` array of `value`.
///
/// # Errors
/// As [`filled`]; also when the element count overflows.
pub fn array4<T: Clone>(
    (d0, d1, d2, d3): (usize, usize, usize, usize),
    value: T,
) -> Result<Array4<T>, AllocError> {
    let bytes = bytes_of::<T>(&[d0, d1, d2, d3]);
    let len = usize::try_from(bytes / std::mem::size_of::<T>().max(1) as u128)
        .map_err(|_| AllocError { bytes, limit: None })?;
    let v = filled(len, value)?;
    Array4::from_shape_vec((d0, d1, d2, d3), v).map_err(|_| AllocError { bytes, limit: None })
}

/// A `rows x cols` array of `value`.
///
/// # Errors
/// As [`array4`].
pub fn array2<T: Clone>((rows, cols): (usize, usize), value: T) -> Result<Array2<T>, AllocError> {
    let bytes = bytes_of::<T>(&[rows, cols]);
    let len = rows
        .checked_mul(cols)
        .ok_or(AllocError { bytes, limit: None })?;
    let v = filled(len, value)?;
    Array2::from_shape_vec((rows, cols), v).map_err(|_| AllocError { bytes, limit: None })
}

/// The smallest memory limit this process can see: its address-space limit (`ulimit -v`), its
/// cgroup's memory limit, and the machine's RAM plus swap. None where none is known.
pub fn memory_limit() -> Option<(u64, &'static str)> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let limits = [
        read("/proc/self/limits")
            .and_then(|t| address_space_limit(&t))
            .map(|b| (b, "address-space limit (ulimit -v)")),
        cgroup_limit().map(|b| (b, "cgroup memory limit")),
        read("/proc/meminfo")
            .and_then(|t| ram_and_swap(&t))
            .map(|b| (b, "RAM and swap")),
    ];
    limits.into_iter().flatten().min_by_key(|(b, _)| *b)
}

/// The soft "Max address space" of a `/proc/self/limits` text, in bytes.
fn address_space_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// MemTotal + SwapTotal of a `/proc/meminfo` text, in bytes.
fn ram_and_swap(text: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
}

/// The memory limit of this process's cgroup (v2, else v1), in bytes.
fn cgroup_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let parse = |p: String| p.trim().parse::<u64>().ok();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        // "max" (v2) or a huge number (v1) when unlimited.
        if let Some(limit) = std::fs::read_to_string(file).ok().and_then(parse) {
            return (limit < 1 << 60).then_some(limit);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_naming_the_bytes() {
        let e = filled(usize::MAX / 8, 0f32).unwrap_err();
        assert_eq!(e.bytes, (usize::MAX / 8) as u128 * 4);
        assert!(e.to_string().contains(&e.bytes.to_string()), "{e}");
        let e = array4((1 << 20, 1 << 20, 1 << 20, 1 << 20), 0f32).unwrap_err();
        assert_eq!(e.bytes, 4u128 << 80);
        let e = array2((usize::MAX, 3), false).unwrap_err();
        assert!(e.to_string().contains("needs"), "{e}");
        assert_eq!(array4((2, 3, 4, 5), 1.5f32).unwrap().sum(), 180.0);
        assert_eq!(array2((2, 3), 7u8).unwrap().len(), 6);
    }

    #[test]
    fn limits_are_read_from_proc_texts() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         4294967296           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(4 << 30));
        assert_eq!(
            address_space_limit(&limits.replace("4294967296", "unlimited")),
            None
        );
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  1 kB\nSwapTotal:  1000 kB\n";
        assert_eq!(ram_and_swap(meminfo), Some(24_001_000 * 1024));
        assert_eq!(human(7_551_360_000), "7.0 GiB");
        assert_eq!(human(512), "512 B");
    }
}
