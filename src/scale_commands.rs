//! The commands of a recipe with `[scale]`: `flow plan` writing a plan file, `flow run` through
//! an executor, `flow task run` and `flow status`.

use std::path::{Path, PathBuf};

use crate::cli::{CacheDirArg, Executor, PlanArgs, RunArgs, StatusArgs, TaskRunArgs};
use crate::commands::{jobs_or_cores, recipe_dir};
use crate::error::{CommandError, CommandResult};
use crate::scale::plan_file::PlanFile;
use crate::scale::{self, runtime, Scaled, Setup};

/// What `flow plan` and `flow run` share of a staged recipe's setup.
struct Common<'a> {
    recipe: &'a crate::cli::RecipeArgs,
    units: &'a crate::cli::UnitArgs,
    cache: &'a CacheDirArg,
    out: Option<&'a PathBuf>,
    jobs: usize,
    window: Option<u32>,
    memory_limit: Option<u64>,
}

impl Common<'_> {
    /// The setup, with the output directory `--out`, else out/<recipe name>/ beside the recipe.
    fn setup(&self, plugins: &[PathBuf], name: &str) -> Setup {
        let recipe = &self.recipe.recipe;
        Setup {
            recipe: recipe.clone(),
            profile: self.recipe.profile.clone(),
            sets: self.recipe.sets.clone(),
            tiles: self.units.tiles.clone(),
            dates: self.units.dates.clone(),
            plugins: plugins.to_vec(),
            out_dir: self
                .out
                .cloned()
                .unwrap_or_else(|| recipe_dir(recipe).join("out").join(name)),
            cache: self.cache.clone(),
            jobs: self.jobs,
            window: self.window.map(|w| w as usize),
            memory_limit: self.memory_limit,
        }
    }
}

/// `flow plan` on a recipe with `[scale]` (validated as `first`): the stages' summary, and the
/// plan file with `--output`.
pub fn plan(
    args: &PlanArgs,
    plugins: &[PathBuf],
    registry: flow_core::Registry,
    first: flow_recipe::Plan,
) -> CommandResult {
    if args.no_cache {
        return Err(CommandError::usage(
            "a recipe with [scale] is planned against the cache (which tasks are done): plan it \
             without --no-cache",
        ));
    }
    let setup = Common {
        recipe: &args.recipe,
        units: &args.units,
        cache: &args.cache,
        out: args.out.as_ref(),
        jobs: jobs_or_cores(args.jobs),
        window: args.window,
        memory_limit: args.memory_limit,
    }
    .setup(plugins, &first.name);
    let scaled = Scaled::open_with(setup, registry, &first)?;
    let file = scaled.plan_file();
    if let Some(path) = &args.output {
        file.write(path)?;
    }
    if args.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&file).unwrap_or_default()
        );
    } else {
        scale::print_plan_summary(&file);
        if let Some(path) = &args.output {
            crate::outln!("plan written to {}", path.display());
        }
    }
    Ok(())
}

/// `flow run` on a recipe with `[scale]` (validated as `first`), through its executor.
pub fn run(
    args: &RunArgs,
    plugins: &[PathBuf],
    registry: flow_core::Registry,
    first: flow_recipe::Plan,
) -> CommandResult {
    if args.no_cache {
        return Err(CommandError::usage(
            "a recipe with [scale] runs as tasks that hand their values over through the cache: \
             run it without --no-cache",
        ));
    }
    let jobs = jobs_or_cores(args.jobs);
    let setup = Common {
        recipe: &args.recipe,
        units: &args.units,
        cache: &args.cache,
        out: args.out.as_ref(),
        jobs,
        window: args.window,
        memory_limit: args.memory_limit,
    }
    .setup(plugins, &first.name);
    let mut scaled = Scaled::open_with(setup, registry, &first)?;
    let limit = crate::plan::memory_limit(args.memory_limit);
    crate::plan::bound_gdal_cache(limit.as_ref());
    let _ = crate::commands::rayon_pool(jobs);
    let file = scaled.plan_file();
    if args.dry_run {
        scale::print_plan_summary(&file);
        return Ok(());
    }
    let plan_path = file.out_dir.join(".flow").join("plan.json");
    file.write(&plan_path)?;
    match &args.executor {
        Executor::Local => {
            let rt = runtime(jobs)?;
            let started = std::time::Instant::now();
            let done = scale::local::run(&mut scaled, &rt);
            rt.shutdown_background();
            let done = done?;
            if !args.quiet {
                for (stage, ran, cached) in &done.stages {
                    crate::outln!("{stage:<8} {ran} tasks run, {cached} done already");
                }
                crate::outln!(
                    "{} tasks in {:.1} s; outputs in {}",
                    done.stages.iter().map(|s| s.1 + s.2).sum::<usize>(),
                    started.elapsed().as_secs_f64(),
                    file.out_dir.display()
                );
            }
        }
        Executor::Slurm => {
            let flow = std::env::current_exe()
                .map_err(|e| CommandError::io(format!("cannot find flow's executable: {e}")))?;
            let options = scale::slurm::SlurmOptions {
                max_attempts: args.max_attempts,
                sbatch_args: args.sbatch_args.clone(),
                flow,
                poll: std::time::Duration::from_millis(500),
            };
            let report = scale::slurm::run(&plan_path, &file, scaled.cache(), &options)?;
            if !args.quiet {
                crate::outln!(
                    "slurm: {} of {} tasks done in {:.1} s, {} submissions over {} attempts; \
                     plan {}",
                    report.done,
                    report.tasks,
                    report.seconds,
                    report.attempts.iter().map(Vec::len).sum::<usize>(),
                    report.attempts.len(),
                    plan_path.display()
                );
            }
        }
        Executor::EmitKubernetes | Executor::EmitAwsBatch => {
            let spec = emit_spec(&file, &plan_path, args, jobs);
            let (text, path) = if args.executor == Executor::EmitKubernetes {
                (
                    crate::emit::kubernetes(&spec),
                    file.out_dir.join("k8s-jobs.yaml"),
                )
            } else {
                (
                    crate::emit::aws_batch(&spec),
                    file.out_dir.join("aws-batch.json"),
                )
            };
            flow_core::atomic::write_atomic(&path, text.as_bytes())
                .map_err(|e| CommandError::io(format!("cannot write {}: {e}", path.display())))?;
            crate::outln!(
                "wrote {} ({} stages, {} tasks to run; plan {})",
                path.display(),
                file.stages.len(),
                file.to_run(),
                plan_path.display()
            );
        }
    }
    Ok(())
}

/// What the emitters need, from the plan file.
fn emit_spec(
    file: &PlanFile,
    plan_path: &Path,
    args: &RunArgs,
    jobs: usize,
) -> crate::emit::EmitSpec {
    crate::emit::EmitSpec {
        name: file.name.clone(),
        image: args.image.clone(),
        plan: plan_path.display().to_string(),
        cache: file.cache.clone(),
        max_attempts: args.max_attempts,
        queue: args.queue.clone(),
        parallelism: None,
        stages: file
            .stages
            .iter()
            .map(|s| crate::emit::StageSpec {
                name: s.name.clone(),
                tasks: s.tasks.len(),
                after: s.after.clone(),
                memory_bytes: s.tasks.iter().map(|t| t.peak_bytes).max().unwrap_or(0),
                cpus: u32::try_from(jobs).unwrap_or(1),
            })
            .collect(),
    }
}

/// `flow task run`.
pub fn task_run(args: TaskRunArgs) -> CommandResult {
    let plan = PlanFile::read(&args.plan)?;
    let index = scale::task::index(args.index, args.index_offset)?;
    let jobs = jobs_or_cores(args.jobs);
    let mut scaled = Scaled::from_plan_file(&plan, &args.cache, jobs)?;
    // The plan's keys must still be the recipe's: a task never runs an edited recipe silently.
    if let Some(planned) = plan.stage(&args.stage).and_then(|s| s.tasks.get(index)) {
        let stage = scaled.staged.stage(&args.stage).cloned();
        let now = stage
            .as_ref()
            .and_then(|s| s.tasks.get(index).map(|t| scaled.task_key(s, t)));
        if let (Some(planned), Some(now)) = (&planned.key, &now) {
            if planned != now {
                return Err(CommandError::usage(format!(
                    "task {}/{index} of {} is not the task planned: the recipe or what it reads \
                     changed since; plan again",
                    args.stage,
                    args.plan.display()
                )));
            }
        }
    }
    let limit = crate::plan::memory_limit(plan.memory_limit);
    crate::plan::bound_gdal_cache(limit.as_ref());
    let _ = crate::commands::rayon_pool(jobs);
    let rt = runtime(jobs)?;
    let run_id = std::env::var("FLOW_RUN_ID").ok();
    let result = scale::task::run(&mut scaled, &rt, &args.stage, index, run_id.as_deref());
    rt.shutdown_background();
    if result.as_ref().is_ok_and(|r| r.already_done) {
        eprintln!(
            "task {}/{index}: done already (its completion record is in the cache)",
            args.stage
        );
    }
    result.map(|_| ())
}

/// `flow status`.
pub fn status(args: StatusArgs) -> CommandResult {
    let plan = PlanFile::read(&args.plan)?;
    let cache = crate::commands::open_cache(&CacheDirArg {
        cache_dir: args
            .cache
            .cache_dir
            .clone()
            .or_else(|| plan.cache_dir.clone()),
        cache: args.cache.cache.clone().or_else(|| plan.cache.clone()),
    })?;
    scale::status::print(&plan, &cache)
}
