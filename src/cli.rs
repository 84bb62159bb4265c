//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// flow runs declarative TOML recipes over Earth-observation rasters as a cached DAG of typed nodes.
#[derive(Debug, Parser)]
#[command(name = "flow", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  flow run recipes/timberlea_kmeans.toml --profile offline\n  flow run recipes/timberlea_kmeans.toml --profile offline --set k=6\n  flow validate recipes/timberlea_kmeans.toml\n  flow graph recipes/timberlea_kmeans.toml --format mermaid\n  flow nodes"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Load a plugin library (repeatable); plugins also come from the recipe's `plugins = [...]`
    /// and from FLOW_PLUGIN_PATH.
    #[arg(long = "plugin", global = true, value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe; only what changed since the last run is recomputed.
    #[command(
        after_help = "Examples:\n  flow run recipes/timberlea_kmeans.toml --profile offline\n  flow run r.toml --set k=6 --set fit.max_iter=50 --jobs 2 --out results/"
    )]
    Run(RunArgs),
    /// Estimate a run before it reads anything: per node the output's shape and grid, its
    /// windows, the bytes it reads and the run's memory while it runs.
    #[command(
        after_help = "Examples:\n  flow plan recipes/timberlea_kmeans.toml --profile offline\n  flow plan r.toml --set stack.resolution=1 --memory-limit 8G --json"
    )]
    Plan(PlanArgs),
    /// Check a recipe without running it: every error, with file:line:col.
    #[command(
        after_help = "Examples:\n  flow validate recipes/timberlea_kmeans.toml\n  flow validate r.toml --profile offline --set k=6 --plan"
    )]
    Validate(ValidateArgs),
    /// Print the recipe's DAG (Graphviz DOT or Mermaid), with each node's cache state.
    #[command(
        after_help = "Examples:\n  flow graph recipes/timberlea_kmeans.toml | dot -Tsvg > dag.svg\n  flow graph recipes/timberlea_kmeans.toml --format mermaid"
    )]
    Graph(GraphArgs),
    /// List every node kind with its ports and params.
    #[command(
        after_help = "Examples:\n  flow nodes\n  flow nodes stack\n  flow nodes --format markdown\n  flow nodes --format json"
    )]
    Nodes(NodesArgs),
    /// Write a commented starter recipe (K-Means land classes from Sentinel-2) that validates and
    /// runs offline as written.
    #[command(
        after_help = "Examples:\n  flow init classes.toml\n  flow init r.toml --name my-map --force"
    )]
    Init(InitArgs),
    /// Inspect and maintain the cache.
    #[command(
        after_help = "Examples:\n  flow cache ls\n  flow cache verify\n  flow cache gc --older-than-days 30\n  flow cache clear"
    )]
    Cache(CacheArgs),
    /// Write a built-in dataset to a directory: the offline Timberlea scene, or a whole
    /// synthetic Sentinel-2 tile or 2 x 2 mosaic of tiles for tests and benchmarks.
    #[command(
        after_help = "Examples:\n  flow fixture timberlea --out scene/\n  flow fixture tile --out tile/                 # 10980 x 10980 at 10 m, one date\n  flow fixture mosaic --size 516 --out mosaic/  # four adjacent 516 x 516 tiles\n  flow fixture tile --dates 2 --out tile2/      # a clear and a cloudy date"
    )]
    Fixture(FixtureArgs),
    /// Run one task of a plan written by `flow plan --output` (what an engine's job runs).
    #[command(
        after_help = "Examples:\n  flow task run --plan plan.json --stage map --index 3\n  flow task run --plan plan.json --stage sample   # index from SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX"
    )]
    Task(TaskArgs),
    /// Show a plan's tasks done, missing and failed, per stage, read from the cache.
    #[command(after_help = "Examples:\n  flow status --plan out/mosaic/.flow/plan.json")]
    Status(StatusArgs),
}

/// Where a scaled recipe's tasks run (`flow run --executor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// Every task in this process (the default).
    Local,
    /// Job arrays submitted with `sbatch`.
    Slurm,
    /// Write Kubernetes Indexed Jobs (YAML) to run the tasks.
    EmitKubernetes,
    /// Write AWS Batch array jobs (JSON) to run the tasks.
    EmitAwsBatch,
}

fn parse_executor(text: &str) -> Result<Executor, String> {
    match text {
        "local" => Ok(Executor::Local),
        "slurm" => Ok(Executor::Slurm),
        "emit:k8s" | "emit:kubernetes" => Ok(Executor::EmitKubernetes),
        "emit:aws-batch" => Ok(Executor::EmitAwsBatch),
        other => Err(format!(
            "unknown executor `{other}`; the executors are local, slurm, emit:k8s and emit:aws-batch"
        )),
    }
}

/// The units of a recipe with `[scale]`, chosen on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct UnitArgs {
    /// Tiles to run, replacing the recipe's `scale.tiles` (comma-separated).
    #[arg(long, value_name = "TILE,...", value_delimiter = ',')]
    pub tiles: Option<Vec<String>>,
    /// Dates to run, replacing the recipe's `scale.dates` (comma-separated).
    #[arg(long, value_name = "DATE,...", value_delimiter = ',')]
    pub dates: Option<Vec<String>>,
}

/// `flow task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TaskAction,
}

/// Task actions.
#[derive(Debug, Subcommand)]
pub enum TaskAction {
    /// Run exactly one task, idempotently: its nodes (what they read comes from the cache), then
    /// its completion record, written last and only once.
    Run(TaskRunArgs),
}

/// `flow task run`.
#[derive(Debug, Args)]
pub struct TaskRunArgs {
    /// The plan file (`flow plan RECIPE --output PLAN`).
    #[arg(long)]
    pub plan: PathBuf,
    /// The stage (`sample`, `fit`, `map`, or `run` for recipes that gather nothing).
    #[arg(long)]
    pub stage: String,
    /// The task's index in its stage [default: SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or
    /// AWS_BATCH_JOB_ARRAY_INDEX].
    #[arg(long)]
    pub index: Option<usize>,
    /// Added to the index (for arrays chunked by an engine's maximum array size).
    #[arg(long, env = "FLOW_TASK_INDEX_OFFSET", default_value_t = 0)]
    pub index_offset: usize,
    /// Where the cache is (default: the plan's).
    #[command(flatten)]
    pub cache: CacheDirArg,
    /// Nodes at once and workers per windowed pass (default: the number of cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

/// `flow status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The plan file.
    #[arg(long)]
    pub plan: PathBuf,
    /// Where the cache is (default: the plan's).
    #[command(flatten)]
    pub cache: CacheDirArg,
}

/// Options shared by the commands that read a recipe.
#[derive(Debug, Clone, Args)]
pub struct RecipeArgs {
    /// The recipe file.
    pub recipe: PathBuf,
    /// Override a param (`k=6`) or a node's param (`fit.max_iter=50`); the value is TOML.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Apply the recipe's [profiles.NAME] table.
    #[arg(long)]
    pub profile: Option<String>,
}

/// Where the cache lives.
#[derive(Debug, Clone, Args)]
pub struct CacheDirArg {
    /// Cache directory (default: the user cache dir, e.g. ~/.cache/flow).
    #[arg(long, env = "FLOW_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A shared cache on object storage (s3://bucket/prefix, file:///path, ...); the cache
    /// directory is its local read-through copy.
    #[arg(long, env = "FLOW_CACHE", value_name = "URL")]
    pub cache: Option<String>,
}

/// `flow run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe, its profile and overrides.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Where the cache is.
    #[command(flatten)]
    pub cache: CacheDirArg,
    /// Nodes to run at once (default: the number of cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Output directory (default: out/<recipe name>/ beside the recipe).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute every node and store no result (builtin datasets are still generated once into
    /// the cache directory's data/).
    #[arg(long)]
    pub no_cache: bool,
    /// Redo live searches even when their cached results have not expired.
    #[arg(long)]
    pub refresh: bool,
    /// Do not print the summary table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Compute rasters window by window, in windows of at most N x N pixels, instead of whole
    /// (the results are the same; memory follows the window, not the area).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub window: Option<u32>,
    /// Memory the run may use (`4G`, `512M`, bytes). A run estimated to need more is refused
    /// before anything is read (exit 2), or once the search shows it (exit 3). Default: half
    /// of the smallest of RAM and swap, the cgroup's limit and `ulimit -v`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,
    /// Print the plan's estimate (per node: output, windows, bytes read, peak memory) and
    /// stop before running anything; exit 2 when it exceeds the memory limit.
    #[arg(long)]
    pub dry_run: bool,
    /// The units of a recipe with `[scale]`.
    #[command(flatten)]
    pub units: UnitArgs,
    /// Where a recipe with `[scale]` runs its tasks: `local` (in this process), `slurm` (job
    /// arrays through sbatch), `emit:k8s` or `emit:aws-batch` (write the jobs to run).
    #[arg(long, value_name = "EXECUTOR", default_value = "local", value_parser = parse_executor)]
    pub executor: Executor,
    /// Slurm: attempts per task, the first included (only retryable failures are retried).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Slurm: an extra sbatch argument (repeatable): `--sbatch-arg=--partition=short`.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// emit: the container image that has `flow` on its PATH.
    #[arg(long, default_value = "flow:latest")]
    pub image: String,
    /// emit: the AWS Batch job queue or the Kubernetes namespace.
    #[arg(long)]
    pub queue: Option<String>,
}

/// `flow plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The recipe, its profile and overrides.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Where the cache is (cached nodes are loaded, not run).
    #[command(flatten)]
    pub cache: CacheDirArg,
    /// Estimate as if nothing were cached.
    #[arg(long)]
    pub no_cache: bool,
    /// Nodes to run at once, and workers per windowed pass (default: the number of cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Window side, as `flow run --window`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub window: Option<u32>,
    /// Memory limit, as `flow run --memory-limit`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,
    /// Print the estimate as JSON.
    #[arg(long)]
    pub json: bool,
    /// The units of a recipe with `[scale]`.
    #[command(flatten)]
    pub units: UnitArgs,
    /// Write the plan file of a recipe with `[scale]` (stages, tasks, keys, estimates, states)
    /// here, for `flow task run --plan`.
    #[arg(long, short, value_name = "PLAN")]
    pub output: Option<PathBuf>,
    /// Output directory the tasks write to (default: out/<recipe name>/ beside the recipe).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_size(text: &str) -> Result<u64, String> {
    flow_core::estimate::parse_bytes(text)
}

/// `flow validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The recipe, its profile and overrides.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Print the validated plan as JSON.
    #[arg(long)]
    pub plan: bool,
}

/// Graph formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// `flow graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The recipe, its profile and overrides.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Where the cache is.
    #[command(flatten)]
    pub cache: CacheDirArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// Do not look at the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Formats of `flow nodes`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NodesFormat {
    /// Plain text.
    Text,
    /// Markdown (the README's node catalog).
    Markdown,
    /// JSON.
    Json,
}

/// `flow nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Show only this kind (`flow nodes stack`).
    pub kind: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = NodesFormat::Text)]
    pub format: NodesFormat,
}

/// `flow init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The recipe file to write.
    #[arg(default_value = "recipe.toml")]
    pub path: PathBuf,
    /// The recipe's name (its output directory) [default: the file's stem].
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `flow cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Where the cache is.
    #[command(flatten)]
    pub cache: CacheDirArg,
    /// What to do.
    #[command(subcommand)]
    pub action: CacheAction,
}

/// Cache actions.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// List entries.
    Ls,
    /// Check every entry's checksums; `--repair` removes bad ones.
    Verify {
        /// Remove entries that do not verify.
        #[arg(long)]
        repair: bool,
    },
    /// Remove leftovers of interrupted writes and, with --older-than-days, old entries.
    Gc {
        /// Remove entries created more than this many days ago (a number >= 0).
        #[arg(long, value_parser = non_negative_days)]
        older_than_days: Option<f64>,
    },
    /// Remove every entry (materialized datasets stay unless --datasets).
    Clear {
        /// Also remove the materialized datasets (the offline scene), regenerated when needed.
        #[arg(long)]
        datasets: bool,
    },
}

/// `flow fixture`.
#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// Dataset name: `timberlea` (the offline scene), `tile` (one whole tile) or `mosaic` (2 x 2
    /// adjacent tiles of the same date).
    pub name: String,
    /// Directory to write into.
    #[arg(long)]
    pub out: PathBuf,
    /// tile and mosaic: width and height of each tile in 10 m pixels, a multiple of 6 up to 10980
    /// [default: 10980]
    #[arg(long)]
    pub size: Option<usize>,
    /// tile and mosaic: number of dates, 1 to 4; the first is nearly cloud-free, the second
    /// cloudy [default: 1]
    #[arg(long)]
    pub dates: Option<usize>,
}

/// A number of days: finite and not negative (a negative age would select every entry).
fn non_negative_days(text: &str) -> Result<f64, String> {
    let days: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of days"))?;
    if days.is_finite() && days >= 0.0 {
        Ok(days)
    } else {
        Err(format!("must be a number of days >= 0, got {text}"))
    }
}

/// Parses the arguments, runs the command and returns the exit code: the one place where a
/// command's failure is printed and becomes a code.
pub fn main() -> flow_core::ExitCode {
    use flow_core::ExitCode;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    crate::commands::init_logging(cli.verbose);
    let plugins = cli.plugins;
    let result = match cli.command {
        Command::Run(a) => crate::commands::run(a, &plugins),
        Command::Plan(a) => crate::commands::plan(a, &plugins),
        Command::Validate(a) => crate::commands::validate(a, &plugins),
        Command::Graph(a) => crate::commands::graph(a, &plugins),
        Command::Nodes(a) => crate::commands::nodes(a, &plugins),
        Command::Init(a) => crate::init::init(a),
        Command::Cache(a) => crate::commands::cache(a),
        Command::Fixture(a) => crate::commands::fixture(a),
        Command::Task(a) => match a.action {
            TaskAction::Run(a) => crate::scale_commands::task_run(a),
        },
        Command::Status(a) => crate::scale_commands::status(a),
    };
    match result {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            e.print();
            e.code
        }
    }
}
