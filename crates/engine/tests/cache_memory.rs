//! Storing a value in the cache and loading it back never holds a second copy of its arrays.
//!
//! A global allocator counts, on the thread under test only (other tests of this binary run on
//! their own threads), the allocations of at least half an array's size. Storing must make none
//! (the arrays are streamed from their own memory to the files), loading exactly one per array
//! (its final allocation, filled from the file). The old in-memory encoding made one more of each
//! (the `.npy` bytes), so these counts fail without streaming; nothing here depends on timing or
//! on the resident size of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flow_core::{Grid, Matrix, Raster, Value};
use flow_engine::{Cache, Key, Lookup};
use ndarray::{Array2, Array4};

/// The system allocator, counting large allocations of watched threads.
struct Counting;

thread_local! {
    /// Allocations of at least this many bytes are counted on this thread (`usize::MAX`: none).
    static THRESHOLD: Cell<usize> = const { Cell::new(usize::MAX) };
    /// How many have been made since the threshold was set.
    static LARGE: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = THRESHOLD.try_with(|t| {
        if size >= t.get() {
            let _ = LARGE.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded to `System` with the caller's arguments; the counting touches
// only const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns what it returned with the number of allocations of at least `bytes` it
/// made on this thread.
fn large_allocations<T>(bytes: usize, f: impl FnOnce() -> T) -> (T, usize) {
    LARGE.with(|n| n.set(0));
    THRESHOLD.with(|t| t.set(bytes));
    let out = f();
    THRESHOLD.with(|t| t.set(usize::MAX));
    (out, LARGE.with(Cell::get))
}

/// A 2-band, 1000 x 1500 cube (12 MB) with NaNs and values whose bits matter.
fn cube() -> Raster {
    Raster {
        data: Array4::from_shape_fn((1, 2, 1000, 1500), |(_, b, y, x)| {
            if (x + y) % 97 == 0 {
                f32::NAN
            } else {
                (b as f32 + 1.0) / 3.0 + y as f32 * 1e-3 + x as f32 * 1e-7
            }
        }),
        grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 1500, 1000),
        bands: vec![Default::default(), Default::default()],
        times: vec!["2021-08-03T15:49:09Z".into()],
    }
}

fn same_bits(a: &Array4<f32>, b: &Array4<f32>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn a_cube_is_cached_and_loaded_without_a_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let key = Key([5; 32]);
    let raster = cube();
    let half = raster.data.len() * 4 / 2;
    let value = Value::Raster(raster);

    let (stored, n) = large_allocations(half, || cache.put(&key, "stack", "s", &value, &[]));
    stored.unwrap();
    assert_eq!(
        n, 0,
        "storing allocated {n} buffer(s) of half the cube or more"
    );

    let (looked_up, n) = large_allocations(half, || cache.get(&key, None));
    let Lookup::Hit(back, _) = looked_up else {
        panic!("{looked_up:?}")
    };
    assert_eq!(
        n, 1,
        "loading allocated {n} buffer(s) of half the cube or more"
    );
    let (Value::Raster(a), Value::Raster(b)) = (&value, back.as_ref()) else {
        panic!("not rasters")
    };
    assert!(same_bits(&a.data, &b.data), "the loaded cube differs");
    assert_eq!((&a.grid, &a.times), (&b.grid, &b.times));

    // The content identity (what keys follow after a live search) streams the cube too.
    let (_, n) = large_allocations(half, || flow_engine::key::content_identity(&value));
    assert_eq!(
        n, 0,
        "hashing allocated {n} buffer(s) of half the cube or more"
    );
}

#[test]
fn a_matrix_loads_into_one_allocation_per_array() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let key = Key([6; 32]);
    // 3000 x 2000 pixels, every other one valid: a 3,000,000 x 2 f32 matrix (24 MB) and a
    // 6 MB mask.
    let valid = Array2::from_shape_fn((2000, 3000), |(y, x)| (x + y) % 2 == 0);
    let rows = valid.iter().filter(|&&v| v).count();
    let data = Array2::from_shape_fn((rows, 2), |(r, c)| r as f32 * 0.25 + c as f32);
    let value = Value::Matrix(Matrix {
        scaling: Default::default(),
        data,
        features: vec!["B04".into(), "B08".into()],
        valid,
        grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 3000, 2000),
    });
    // Half the mask: the matrix's data and its mask each count once on loading.
    let threshold = 2000 * 3000 / 2;
    let (stored, n) = large_allocations(threshold, || cache.put(&key, "flatten", "f", &value, &[]));
    stored.unwrap();
    assert_eq!(n, 0, "storing allocated {n} large buffer(s)");
    let (looked_up, n) = large_allocations(threshold, || cache.get(&key, None));
    let Lookup::Hit(back, _) = looked_up else {
        panic!("{looked_up:?}")
    };
    assert_eq!(
        n, 2,
        "loading allocated {n} large buffer(s), not one per array"
    );
    assert_eq!(*back, value);
}
