//! The commands behind the CLI.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use flow_engine::{Cache, Event, RunOptions};
use flow_recipe::{render, Overrides, Plan};

use crate::cli::{
    CacheAction, CacheArgs, CacheDirArg, FixtureArgs, GraphArgs, GraphFormat, NodesArgs, PlanArgs,
    RecipeArgs, RunArgs, ValidateArgs,
};
use crate::error::{CommandError, CommandResult};
use crate::progress::Progress;
use crate::report;
use flow_core::ExitCode;

/// Sets up tracing: `-v` info, `-vv` debug; `RUST_LOG` wins. Logs go to stderr.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .without_time()
        .try_init();
}

/// Lines longer than this are not drawn with carets: miette's graphical handler cannot pad past
/// column 65,535 (it panics), so such recipes get the narrated form, which still names
/// file:line:col.
pub const MAX_DRAWN_LINE: usize = 4096;

/// True when diagnostics on `source` are drawn with carets (no line longer than
/// [`MAX_DRAWN_LINE`]); otherwise they are narrated.
pub fn draws_carets(source: &str) -> bool {
    !source.lines().any(|l| l.len() > MAX_DRAWN_LINE)
}

/// miette's graphical handler as the CLI configures it (Unicode, width 100, no links).
pub fn graphical_handler(color: bool) -> miette::GraphicalReportHandler {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
}

fn render_diagnostic(diag: &dyn miette::Diagnostic, source: &str) -> String {
    let mut out = String::new();
    if !draws_carets(source) {
        let _ = miette::NarratableReportHandler::new().render_report(&mut out, diag);
        return out;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = graphical_handler(color).render_report(&mut out, diag);
    out
}

/// Reads and validates a recipe; on failure prints the diagnostics and returns the exit code.
fn load_plan(args: &RecipeArgs, registry: &flow_core::Registry) -> Result<Plan, CommandError> {
    let overrides = Overrides::new(args.profile.clone(), &args.sets);
    load_plan_with(&args.recipe, &overrides, registry)
}

/// Reads and validates the recipe `recipe` with `overrides`; a failure carries the rendered
/// diagnostics and their exit code.
pub(crate) fn load_plan_with(
    recipe: &Path,
    overrides: &Overrides,
    registry: &flow_core::Registry,
) -> Result<Plan, CommandError> {
    let file = recipe.display().to_string();
    let text = std::fs::read_to_string(recipe)
        .map_err(|e| CommandError::usage(format!("cannot read recipe {file}: {e}")))?;
    Plan::build(&file, &text, registry, overrides).map_err(|diags| {
        let code = if diags.plugin_fault() {
            ExitCode::Plugin
        } else {
            ExitCode::Usage
        };
        CommandError::rendered(code, render_diagnostic(&diags, &text))
    })
}

/// The registry with the recipe's plugins, then the recipe's validated plan.
fn registry_and_plan(
    args: &RecipeArgs,
    plugins: &[PathBuf],
) -> Result<(flow_core::Registry, Plan), CommandError> {
    let registry = registry_with_plugins(Some(&args.recipe), plugins)?;
    let plan = load_plan(args, &registry)?;
    Ok((registry, plan))
}

/// The built-in kinds plus every plugin: the recipe's `plugins = [...]` (relative to the
/// recipe), FLOW_PLUGIN_PATH, then `--plugin`. A plugin that cannot be loaded is reported and
/// the command exits 6 before the recipe is validated.
pub(crate) fn registry_with_plugins(
    recipe: Option<&Path>,
    plugins: &[PathBuf],
) -> Result<flow_core::Registry, CommandError> {
    let mut registry = crate::registry::builtin();
    let listed = recipe.and_then(|r| {
        let text = std::fs::read_to_string(r).ok()?;
        let file = r.display().to_string();
        let list =
            flow_recipe::extends::plugins(&file, &text, &flow_recipe::extends::read_recipe_file);
        Some((list, recipe_dir(r)))
    });
    let listed = listed.as_ref().map(|(l, d)| (l.as_slice(), d.as_path()));
    flow_plugin::load_all(&mut registry, listed, plugins)
        .map_err(|e| CommandError::new(ExitCode::Plugin, e.to_string()))?;
    Ok(registry)
}

pub(crate) fn recipe_dir(recipe: &Path) -> PathBuf {
    recipe
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cache_root(arg: &CacheDirArg) -> PathBuf {
    arg.cache_dir.clone().unwrap_or_else(|| {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("flow")
    })
}

pub(crate) fn open_cache(arg: &CacheDirArg) -> Result<Cache, CommandError> {
    let failed = |e: flow_engine::CacheError| CommandError::new(e.exit_code(), e.to_string());
    let cache = Cache::open(cache_root(arg)).map_err(failed)?;
    match &arg.cache {
        Some(url) => Ok(cache.with_remote(flow_engine::Remote::open(url).map_err(failed)?)),
        None => Ok(cache),
    }
}

/// `flow validate`.
pub fn validate(args: ValidateArgs, plugins: &[PathBuf]) -> CommandResult {
    let (_, plan) = registry_and_plan(&args.recipe, plugins)?;
    if args.plan {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&plan.to_json()).unwrap_or_default()
        );
    } else {
        crate::outln!(
            "{}: ok ({} nodes)",
            args.recipe.recipe.display(),
            plan.nodes.len()
        );
    }
    Ok(())
}

/// `flow graph`.
pub fn graph(args: GraphArgs, plugins: &[PathBuf]) -> CommandResult {
    let (registry, plan) = registry_and_plan(&args.recipe, plugins)?;
    let mut states = render::States::new();
    if !args.no_cache {
        let root = cache_root(&args.cache);
        if root.join("objects").is_dir() {
            if let Ok(cache) = Cache::open(&root) {
                let options = run_options(
                    &args.recipe.recipe,
                    Some(cache.clone()),
                    &args.cache,
                    1,
                    PathBuf::new(),
                    false,
                    &registry,
                );
                for (id, state) in flow_engine::executor::cache_states(&plan, &options) {
                    states.insert(id, state.to_string());
                }
            }
        }
    }
    match args.format {
        GraphFormat::Dot => crate::out!("{}", render::dot(&plan, &states)),
        GraphFormat::Mermaid => crate::out!("{}", render::mermaid(&plan, &states)),
    }
    Ok(())
}

/// `flow nodes`.
pub fn nodes(args: NodesArgs, plugins: &[PathBuf]) -> CommandResult {
    let registry = registry_with_plugins(None, plugins)?;
    if let Some(kind) = &args.kind {
        if registry.get(kind).is_none() {
            let known: Vec<&str> = registry.kinds().map(|k| k.name()).collect();
            let hint = match flow_core::schema::suggest(kind, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the kinds are {}", known.join(", ")),
            };
            return Err(CommandError::usage(format!(
                "unknown node kind `{kind}`; {hint}"
            )));
        }
    }
    crate::out!(
        "{}",
        report::nodes(&registry, args.format, args.kind.as_deref())
    );
    Ok(())
}

/// Options of one run. Builtin datasets are materialized in the cache root's `data/` even with
/// `--no-cache`: they are inputs (like a download), not results, and are generated once.
pub(crate) fn run_options(
    recipe: &Path,
    cache: Option<Cache>,
    cache_arg: &CacheDirArg,
    jobs: usize,
    out_dir: PathBuf,
    refresh: bool,
    registry: &flow_core::Registry,
) -> RunOptions {
    let data_dir = Cache::data_dir_in(&cache_root(cache_arg));
    RunOptions {
        jobs,
        cache,
        refresh,
        out_dir,
        recipe_dir: recipe_dir(recipe),
        data_dir,
        datasets: registry.datasets.clone(),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        registry: Some(Arc::new(registry.clone())),
        window: None,
        memory_limit: None,
    }
}

/// `--jobs`, else the number of cores.
pub(crate) fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

/// Prints the estimate of a run (`flow plan`, `flow run --dry-run`); exit 2 when it exceeds the
/// memory limit.
fn print_estimate(
    plan: &Plan,
    options: &RunOptions,
    limit: Option<&(u64, String)>,
    json: bool,
) -> CommandResult {
    let items = run_item_nodes(plan, options, &[]);
    let estimate = flow_engine::estimate_run(plan, options, &items);
    if json {
        let mut value = serde_json::to_value(&estimate)
            .map_err(|e| CommandError::io(format!("cannot write the estimate: {e}")))?;
        value["memory_limit"] = limit.map_or(serde_json::Value::Null, |l| l.0.into());
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        crate::out!("{}", crate::plan::render(&estimate, limit));
    }
    let Some((bytes, source)) = limit else {
        return Ok(());
    };
    let Some(why) = estimate.exceeds(*bytes) else {
        return Ok(());
    };
    // Exit 2 when the plan alone shows it, 3 when only the items do.
    let code = match flow_engine::estimate_run(plan, options, &[]).exceeds(*bytes) {
        Some(_) => ExitCode::Usage,
        None => ExitCode::BadData,
    };
    Err(CommandError::new(code, format!("{why} ({source})")))
}

/// The outputs of the plan's item nodes (searches and signing, which read catalogs, not
/// pixels), run now so that the estimate knows the grid and the time steps; in plan order,
/// `None` for every other node and for one that failed (with a warning). An item node whose
/// cache key is in `keys` (in plan order; empty for none) and cached is loaded instead.
pub(crate) fn run_item_nodes(
    plan: &Plan,
    options: &RunOptions,
    keys: &[Option<flow_engine::Key>],
) -> Vec<Option<Arc<flow_core::Value>>> {
    let index: std::collections::HashMap<&str, usize> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut values: Vec<Option<Arc<flow_core::Value>>> = Vec::with_capacity(plan.nodes.len());
    for (n, node) in plan.nodes.iter().enumerate() {
        let is_items = node.output_type() == flow_core::ValueType::Items;
        let cached = match (is_items, keys.get(n).copied().flatten(), &options.cache) {
            (true, Some(key), Some(cache)) => match cache.get(&key, None) {
                flow_engine::Lookup::Hit(v, _) => Some(Arc::new(*v)),
                _ => None,
            },
            _ => None,
        };
        if cached.is_some() {
            values.push(cached);
            continue;
        }
        let inputs: Option<Vec<(String, Arc<flow_core::Value>)>> = node
            .inputs
            .iter()
            .map(|(port, src)| {
                let i = *index.get(src.as_str())?;
                values.get(i)?.clone().map(|v| (port.clone(), v))
            })
            .collect();
        let value = match inputs {
            Some(inputs) if is_items => {
                let ctx = options.context(&node.id);
                match node.node.run(&ctx, &flow_core::Inputs::new(inputs)) {
                    Ok(v) => Some(Arc::new(v)),
                    Err(e) => {
                        eprintln!(
                            "warning: `{}` failed ({}); what follows it is estimated without its items",
                            node.id,
                            flow_core::redact::secrets(&e.to_string())
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        values.push(value);
    }
    values
}

/// `flow plan`.
pub fn plan(args: PlanArgs, plugins: &[PathBuf]) -> CommandResult {
    let (registry, plan) = registry_and_plan(&args.recipe, plugins)?;
    if plan.scale.is_some() || args.output.is_some() || args.units.tiles.is_some() {
        return crate::scale_commands::plan(&args, plugins, registry, plan);
    }
    let cache = if args.no_cache {
        None
    } else {
        Some(open_cache(&args.cache)?)
    };
    let out_dir = recipe_dir(&args.recipe.recipe).join("out").join(&plan.name);
    let jobs = jobs_or_cores(args.jobs);
    let mut options = run_options(
        &args.recipe.recipe,
        cache,
        &args.cache,
        jobs,
        out_dir,
        false,
        &registry,
    );
    let limit = crate::plan::memory_limit(args.memory_limit);
    options.window = args.window.map(|w| w as usize);
    options.memory_limit = limit.as_ref().map(|l| l.0);
    print_estimate(&plan, &options, limit.as_ref(), args.json)
}

/// `flow run`.
pub fn run(args: RunArgs, plugins: &[PathBuf]) -> CommandResult {
    let (registry, plan) = registry_and_plan(&args.recipe, plugins)?;
    if plan.scale.is_some()
        || args.units.tiles.is_some()
        || args.executor != crate::cli::Executor::Local
    {
        return crate::scale_commands::run(&args, plugins, registry, plan);
    }
    let cache = if args.no_cache {
        None
    } else {
        Some(open_cache(&args.cache)?)
    };
    let jobs = jobs_or_cores(args.jobs);
    let limit = crate::plan::memory_limit(args.memory_limit);
    crate::plan::bound_gdal_cache(limit.as_ref());
    let _ = rayon_pool(jobs);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| recipe_dir(&args.recipe.recipe).join("out").join(&plan.name));
    let mut options = run_options(
        &args.recipe.recipe,
        cache,
        &args.cache,
        jobs,
        out_dir.clone(),
        args.refresh,
        &registry,
    );
    options.window = args.window.map(|w| w as usize);
    options.memory_limit = limit.as_ref().map(|l| l.0);
    if args.dry_run {
        return print_estimate(&plan, &options, limit.as_ref(), false);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        CommandError::io(format!(
            "cannot create output directory {}: {e}",
            out_dir.display()
        ))
    })?;
    let progress = Progress::new(plan.nodes.len());
    options.progress = Some(progress.sink());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(jobs + 2)
        .enable_all()
        .build()
        .map_err(|e| CommandError::io(format!("cannot start the runtime: {e}")))?;
    let report = runtime.block_on(flow_engine::run(&plan, options, |event: Event| {
        progress.event(&event)
    }));
    progress.finish();

    let run_json = out_dir.join("run.json");
    if let Err(e) = report::write_json_atomic(&run_json, &report) {
        eprintln!("warning: cannot write {}: {e}", run_json.display());
    }
    if !args.quiet {
        report::print_summary(&report, &out_dir);
    }
    if let Some(error) = &report.error {
        let failed = report.nodes.iter().find(|n| n.error.is_some());
        match failed {
            Some(n) => eprintln!(
                "error: node `{}` ({}) failed: {}",
                n.id,
                n.kind,
                n.error.as_deref().unwrap_or_default()
            ),
            None => eprintln!("error: {error}"),
        }
    }
    // Nodes still running on blocking threads (after Ctrl-C) are abandoned; their cache writes,
    // if any, stay in the cache's tmp/ and are never read.
    runtime.shutdown_background();
    match report.exit_code {
        ExitCode::Ok => Ok(()),
        code => Err(CommandError::reported(code)),
    }
}

pub(crate) fn rayon_pool(jobs: usize) -> Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build_global()
        .map_err(|e| e.to_string())
}

/// `flow cache`.
pub fn cache(args: CacheArgs) -> CommandResult {
    let cache = open_cache(&args.cache)?;
    match args.action {
        CacheAction::Ls => {
            let entries = cache.entries();
            let total: u64 = entries.iter().map(|e| e.size).sum();
            for e in &entries {
                let (kind, node) = e
                    .manifest
                    .as_ref()
                    .map(|m| (m.kind.as_str(), m.node.as_str()))
                    .unwrap_or(("?", "?"));
                crate::outln!(
                    "{}  {:<14} {:<14} {:>10}",
                    &e.key[..12],
                    kind,
                    node,
                    report::human_bytes(e.size)
                );
            }
            crate::outln!(
                "{} entries, {} in {}",
                entries.len(),
                report::human_bytes(total),
                cache.root().display()
            );
            Ok(())
        }
        CacheAction::Verify { repair } => {
            let (count, bad) = cache.verify(repair);
            for (key, reason) in &bad {
                crate::outln!(
                    "bad {key}: {reason}{}",
                    if repair { " (removed)" } else { "" }
                );
            }
            crate::outln!("{count} entries, {} bad", bad.len());
            if bad.is_empty() || repair {
                Ok(())
            } else {
                Err(CommandError::reported(ExitCode::Io))
            }
        }
        CacheAction::Gc { older_than_days } => {
            let max_age = older_than_days.map(|d| (d * 86400.0) as u64);
            let (entries, tmps, freed) = cache.gc(max_age, 600);
            crate::outln!(
                "removed {entries} entries and {tmps} interrupted writes, {} freed",
                report::human_bytes(freed)
            );
            Ok(())
        }
        CacheAction::Clear { datasets } => {
            cache
                .clear(datasets)
                .map_err(|e| CommandError::new(e.exit_code(), e.to_string()))?;
            crate::outln!("cleared {}", cache.root().display());
            Ok(())
        }
    }
}

/// `flow fixture`: the registry's datasets (the offline scene), or the big `tile` and `mosaic`
/// fixtures with their size and number of dates.
pub fn fixture(args: FixtureArgs) -> CommandResult {
    use flow_nodes_raster::scene::{BigFixture, Layout, TILE_SIZE};
    let registry = crate::registry::builtin();
    let layout = match args.name.as_str() {
        "tile" => Some(Layout::Tile),
        "mosaic" => Some(Layout::Mosaic),
        _ => None,
    };
    let Some(layout) = layout else {
        let Some(provider) = registry.datasets.get(&args.name) else {
            let mut known: Vec<&str> = registry.datasets.names().collect();
            known.extend(["tile", "mosaic"]);
            return Err(CommandError::usage(format!(
                "no dataset `{}`; known: {}",
                args.name,
                known.join(", ")
            )));
        };
        if args.size.is_some() || args.dates.is_some() {
            return Err(CommandError::usage(format!(
                "--size and --dates apply to the tile and mosaic fixtures, not to `{}`",
                args.name
            )));
        }
        create_dir(&args.out)?;
        let path = provider
            .materialize(&args.out)
            .map_err(|e| CommandError::new(e.exit_code(), e.to_string()))?;
        crate::outln!("{}", path.display());
        return Ok(());
    };
    let spec = BigFixture::new(
        layout,
        args.size.unwrap_or(TILE_SIZE),
        args.dates.unwrap_or(1),
    )
    .map_err(|e| CommandError::usage(format!("flow fixture {}: {e}", layout.name())))?;
    create_dir(&args.out)?;
    let path = flow_nodes_raster::scene::generate_big(&args.out, &spec).map_err(|e| {
        let e = flow_core::NodeError::from(e);
        CommandError::new(e.exit_code(), e.to_string())
    })?;
    crate::outln!("{}", path.display());
    Ok(())
}

fn create_dir(dir: &Path) -> CommandResult {
    std::fs::create_dir_all(dir)
        .map_err(|e| CommandError::io(format!("cannot create {}: {e}", dir.display())))
}
