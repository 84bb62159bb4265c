//! End-to-end tests of the `flow` binary, linked into one test binary.

/// Helpers to run the binary.
mod support;

/// `flow validate` on every fixture in recipes/valid and recipes/invalid.
mod validate;

/// `flow nodes`, `flow graph`, `flow cache` and the command line itself.
mod cli;

/// The README's generated sections.
mod readme;

/// The Timberlea recipe end to end on the offline scene.
mod timberlea;

/// `kmeans-fit` with `k = "auto"` on the offline scene: the true number of classes, the sweep's
/// chart, the same on any thread count.
mod kauto;

/// The recipe's area of interest: search, bounds and clipping.
mod aoi;

/// A model and its scaling fitted on one date and applied to another.
mod two_dates;

/// `composite`: the offline scene's dates combined per pixel, then classified.
mod composite;

/// `flow fixture tile` and `flow fixture mosaic` at small sizes, checked and classified.
mod big_fixtures;

/// stac-search against a real STAC API (stac-fastapi-pgstac on pgstac), started by scripts/test.
mod stac_api;

/// The memory budget: `flow plan`, `--dry-run` and `--memory-limit`.
mod memory_budget;

/// The cache through the binary: concurrent runs, SIGKILL, corruption, Ctrl-C.
mod cache;

/// COGs over HTTP through the STAC API, and Planetary Computer signing end to end.
mod stac_http;

/// Plugins: the majority-filter example and the test-only plugins, built with cargo and loaded by
/// the binary.
mod plugins;

/// Unreadable assets: exit 3 with item, asset and href.
mod raster_errors;

/// Every file of the fuzz corpus (fuzz/corpus/recipe_validate) and a few generated extremes
/// through `flow::fuzzing::check_recipe`, so that CI covers the corpus without cargo-fuzz.
mod fuzz_corpus;
/// Damaged tiles, checksums, HTTP errors and timeouts, cubes larger than memory, full disks and
/// stale temporary files: exit codes and messages that name what failed.
mod raster_trust;
/// The same recipe computed whole and window by window: byte-identical outputs.
mod windowed;

/// A loopback file server with ranges, ETags and a request hook (shared with the raster crate's
/// tests).
mod http_files;

/// Remote catalogs and files: the hrefs their items may name, the GDAL drivers that open files,
/// remote files that change behind unchanged items.
mod raster_remote;

/// Items of one date mosaicked into one time step, first valid pixel first.
mod mosaic;

/// `mask-nodata`'s bit masks on a Landsat Collection 2 like scene (QA_PIXEL), whole and windowed.
mod bitmask;

/// `write` and the output directory: symbolic links that lead out of it are refused.
mod output_dir;

/// A cube that fits in memory once, but not twice, is cached and loaded again under an
/// address-space limit.
mod store_memory;

/// Time steps chosen by date (`time`, `times`) on stack, composite and flatten; features named
/// by date.
mod time_select;

/// `script` nodes: the NDMI example against Rust, the cache key (script, args, interpreter),
/// failing, slow and wrong scripts.
mod script;

/// `read` and `assess`: the offline map against the scene's truth, checked against
/// scikit-learn; reference files that change or are missing.
mod assess;

/// `classifier-fit`: a random forest trained on the offline scene's ground truth (held-out
/// accuracy, the same model on one and two threads), and `predict` refusing other features.
mod classifier;

/// One model over two tiles: two halves of the offline scene sampled (`sample`), gathered
/// (`gather`), fitted once and each classified, whole and window by window.
mod sample_gather;

/// The shared cache on S3 (moto on 127.0.0.1, started by scripts/test): a second machine loads
/// everything, concurrent runs leave whole entries, a corrupted object is recomputed and
/// rewritten, a missing bucket or an unreachable endpoint is exit 5.
mod object_store;

/// Recipes cut into tasks: plan files, `flow task run` in any order, the local executor, status.
mod scale;

/// The loopback Slurm cluster that scripts/test starts: a job array through sbatch.
mod slurm_cluster;

/// The mosaic recipe on Slurm and a shared S3 cache (both on loopback), and as emitted jobs.
mod scale_out;
