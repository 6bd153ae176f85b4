//! The `embed-collections` binary: parse flags, resolve the configuration, run, map the outcome
//! to an exit code. Everything else lives in the library.

// Input and the environment never panic the tool: no unwrap or expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use clap::Parser;
use embed_collections::cli::{
    BenchArgs, Cli, Command, ConvertArgs, DevicesArgs, EmbedQueriesArgs, EvalArgs, FetchModelsArgs,
    MergeArgs, RunArgs, ServeArgs,
};
use embed_collections::config::{self, Environment};
use embed_collections::exit::{self, Classified};
use embed_collections::export::RunStatus;
use embed_collections::models::ModelManager;
use embed_collections::pipeline::check::{check, ProblemClass};
use embed_collections::pipeline::evaluate::evaluate_output;
use embed_collections::pipeline::merge::ShardSet;
use embed_collections::pipeline::BatchRunner;
use embed_collections::telemetry::init_logging;

fn main() {
    let cli = Cli::parse();
    // The one read of the process environment: every command takes its variables from here.
    let env = Environment::from_process();
    if env.int8_kernel_portable() {
        embed_collections::models::packed::int8::Int8Kernel::force_portable();
    }
    std::process::exit(run(&cli, &env));
}

fn run(cli: &Cli, env: &Environment) -> i32 {
    match &cli.command {
        Some(Command::Eval(args)) => evaluate_output_dir(args),
        Some(Command::Check(args)) => check_run(args, env),
        Some(Command::Config(args)) => show_config(args, env),
        Some(Command::EmbedQueries(args)) => embed_queries(args, env),
        Some(Command::Serve(args)) => serve(args, env),
        Some(Command::Bench(args)) => bench(args, env),
        Some(Command::Merge(args)) => merge(args, env),
        Some(Command::Convert(args)) => convert(args),
        Some(Command::Devices(args)) => devices(args),
        Some(Command::FetchModels(args)) => fetch_models(args),
        None => match resolve_run(&cli.run, env) {
            Ok(config) => run_pipeline(&cli.run, config, None, env),
            Err(code) => code,
        },
    }
}

/// The model manager of `models_dir`, with the Hugging Face cache and offline switch the
/// environment gives.
fn model_manager(models_dir: std::path::PathBuf, env: &Environment) -> ModelManager {
    ModelManager::new(models_dir, env.hf_hub_cache(), env.hf_hub_offline())
}

/// `embed-collections bench`: encoder throughput, one JSON line per repetition.
fn bench(args: &BenchArgs, env: &Environment) -> i32 {
    use embed_collections::bench::{run_bench, BenchModel, BenchSpec};
    use embed_collections::models::bert_family::EncoderBackend;
    use embed_collections::models::packed::Threads;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (workers, threads) = match (args.workers, args.threads) {
        (Some(workers), Some(threads)) => (workers, threads),
        (Some(workers), None) => (workers, (cores / workers.max(1)).max(1)),
        (None, Some(threads)) => (1, threads),
        (None, None) => (cores, 1),
    };
    let spec = BenchSpec {
        model: args.model,
        model_ref: args.model_ref.clone().unwrap_or_else(|| {
            match args.model {
                BenchModel::Dense => config::DEFAULT_DENSE_MODEL,
                BenchModel::Sparse => config::DEFAULT_SPARSE_MODEL,
                BenchModel::Rerank => config::DEFAULT_RERANK_MODEL,
            }
            .to_string()
        }),
        texts: args.texts.clone(),
        limit: args.limit,
        batch_size: args.batch_size,
        max_length: args.max_length,
        backend: if args.backend == "candle" {
            EncoderBackend::Candle
        } else {
            EncoderBackend::Packed
        },
        workers,
        threads: if threads <= 1 {
            Threads::Single
        } else {
            Threads::Pool(threads)
        },
        repeat: args.repeat.max(1),
        precision: args.precision,
    };
    let models_dir = args
        .models_dir
        .clone()
        .or_else(|| env.raw_value(config::env_vars::MODELS_DIR).map(Into::into))
        .unwrap_or_else(|| env.default_models_dir());
    let manager = model_manager(models_dir, env);
    match run_bench(&spec, &manager) {
        Ok(results) => {
            for result in results {
                match serde_json::to_string(&result) {
                    Ok(line) => println!("{line}"),
                    Err(err) => {
                        report(&anyhow::Error::new(err), None);
                        return exit::FAILURE;
                    }
                }
            }
            exit::OK
        }
        Err(err) => {
            report(&anyhow::Error::new(err).context("benchmark failed"), None);
            exit::FAILURE
        }
    }
}

/// `embed-collections eval`: score existing ranked lists against qrels.
fn evaluate_output_dir(args: &EvalArgs) -> i32 {
    let qrels = match embed_collections::eval::read_qrels(&args.qrels) {
        Ok(qrels) => qrels,
        Err(err) => {
            report(
                &anyhow::Error::new(err),
                Some("qrels are BEIR TSV: query-id, corpus-id, score"),
            );
            return exit::INPUT_ERROR;
        }
    };
    match evaluate_output(&args.output, &qrels, args.collections.as_deref()) {
        Ok(evaluations) => {
            for evaluation in evaluations {
                println!(
                    "{} (lists cut at {} candidates; {} failed queries):",
                    evaluation.collection, evaluation.depth, evaluation.failed_queries
                );
                if let Some(line) = evaluation.coverage.describe() {
                    println!("  {line}");
                }
                let rows: Vec<_> = evaluation.lists.into_iter().collect();
                if !rows.is_empty() {
                    print!("{}", embed_collections::eval::format_table(&rows));
                }
            }
            exit::OK
        }
        Err(err) => fail(err, None),
    }
}

/// `embed-collections config`: the effective settings with their origins, nothing run.
fn show_config(args: &RunArgs, env: &Environment) -> i32 {
    let config = match config::resolve(args.config.as_deref(), env, &args.overrides()) {
        Ok(config) => config,
        Err(err) => return fail(err, Some("invalid configuration")),
    };
    match config::show::effective_toml(&config) {
        Ok(text) => {
            print!("{text}");
            exit::OK
        }
        Err(err) => {
            report(
                &anyhow::Error::new(err).context("cannot render the settings"),
                None,
            );
            exit::FAILURE
        }
    }
}

/// `embed-collections check`: every problem at once, no model run.
fn check_run(args: &RunArgs, env: &Environment) -> i32 {
    let config = match config::resolve(args.config.as_deref(), env, &args.overrides()) {
        Ok(config) => config,
        Err(err) => return fail(err, Some("invalid configuration")),
    };
    init_logging(config.telemetry.log_format, args.verbosity().min(-1), env);
    let manager = model_manager(config.models.dir.clone(), env);
    let found = check(&config, &manager);
    for problem in &found.problems {
        let kind = if problem.error { "error" } else { "warning" };
        println!("{kind}: {}", problem.message);
    }
    let errors: Vec<_> = found.errors().collect();
    println!(
        "{} collections, {} chunks, {} models available; {} errors, {} warnings",
        found.collections,
        found.chunks,
        found.models,
        errors.len(),
        found.problems.len() - errors.len()
    );
    match errors.iter().map(|p| p.class).min() {
        None => exit::OK,
        Some(ProblemClass::Input) => exit::INPUT_ERROR,
        Some(_) => exit::FAILURE,
    }
}

/// `embed-collections merge`: check the shards, then rank over their merged vectors.
/// `embed-collections convert`: a finished run's points in the other format.
fn convert(args: &ConvertArgs) -> i32 {
    use embed_collections::pipeline::convert::convert;
    match convert(&args.output, args.to) {
        Ok(converted) => {
            if converted.is_empty() {
                println!(
                    "nothing to convert: every collection has its points in {} already",
                    args.to
                );
            }
            for c in converted {
                println!(
                    "{}: {} points -> {} files ({})",
                    c.collection,
                    c.points,
                    c.files.len(),
                    c.files.join(", ")
                );
            }
            exit::OK
        }
        Err(err) => fail(err, None),
    }
}

fn merge(args: &MergeArgs, env: &Environment) -> i32 {
    let run = &args.run;
    let refused = if run.resume {
        Some("--resume")
    } else if run.shard.is_some() {
        Some("--shard")
    } else if env
        .raw_value(config::env_vars::SHARD)
        .is_some_and(|v| !v.is_empty())
    {
        Some(config::env_vars::SHARD)
    } else {
        None
    };
    if let Some(option) = refused {
        report(
            &anyhow::anyhow!("merge does not take {option}"),
            Some("a merge always starts afresh from the shards; rerun a shard with --shard I/N --resume"),
        );
        return exit::CONFIG_ERROR;
    }
    // The output directory is needed before the shards are opened (and locked): a merge into
    // one of them is refused first.
    let config = match resolve_run(run, env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let shards = match ShardSet::open(&args.shards, &config.output.dir) {
        Ok(shards) => shards,
        Err(err) => {
            report(
                &anyhow::Error::new(err).context("cannot merge these shards"),
                Some("give every shard-I-of-N directory of one sharded run (or the directory holding them)"),
            );
            return exit::CONFIG_ERROR;
        }
    };
    run_pipeline(run, config, Some(shards), env)
}

/// The run's configuration from its flags, file and `env`; on an error, reported, the exit
/// code.
fn resolve_run(cli: &RunArgs, env: &Environment) -> Result<config::RunConfig, i32> {
    config::resolve(cli.config.as_deref(), env, &cli.overrides())
        .map_err(|err| fail(err, Some("invalid configuration")))
}

fn run_pipeline(
    cli: &RunArgs,
    config: config::RunConfig,
    merge: Option<ShardSet>,
    env: &Environment,
) -> i32 {
    init_logging(config.telemetry.log_format, cli.verbosity(), env);
    if let Err(err) = embed_collections::interrupt::install() {
        tracing::warn!("cannot install the SIGINT/SIGTERM handlers: {err}");
    }
    let manager = model_manager(config.models.dir.clone(), env);
    let mut runner = BatchRunner::new(config, manager).with_resume(cli.resume);
    if let Some(shards) = merge {
        runner = runner.with_merge(shards);
    }
    match runner.run() {
        Ok(outcome) => {
            if !cli.quiet {
                print_summary(&outcome);
            }
            match outcome.status {
                RunStatus::Ok => exit::OK,
                RunStatus::Interrupted => exit::INTERRUPTED,
                // Partial is 4 whatever failed (the manifest says what); 3 only when nothing
                // was done and input was the reason.
                RunStatus::Partial => exit::PARTIAL_FAILURE,
                _ if outcome.input_failures > 0 => exit::INPUT_ERROR,
                RunStatus::Failed | RunStatus::Running => exit::FAILURE,
            }
        }
        Err(err) => fail(err, None),
    }
}

/// `embed-collections devices`: the CPU's extensions and, in the CUDA build, the start-up check.
fn devices(args: &DevicesArgs) -> i32 {
    use embed_collections::gpu::runtime::CudaBuild;
    let cpu = embed_collections::models::packed::cpu_extensions();
    let cuda = CudaBuild::current().map(|_| cuda_check());
    if args.json {
        let value = serde_json::json!({
            "cpu": cpu,
            "cuda": match &cuda {
                None => serde_json::Value::Null,
                Some(Ok(report)) => serde_json::to_value(report).unwrap_or_default(),
                Some(Err(err)) => serde_json::json!({ "error": err.to_string() }),
            },
        });
        println!("{value}");
    } else {
        println!("cpu: {}", cpu.join(", "));
        match &cuda {
            None => println!("cuda: not in this build (the CPU build; the GPU one is the embed-collections-cuda wheel or scripts/build-cuda.sh)"),
            Some(Ok(report)) => {
                for line in embed_collections::gpu::runtime::describe(report) {
                    println!("cuda: {line}");
                }
            }
            Some(Err(_)) => {}
        }
    }
    match cuda {
        Some(Err(err)) => {
            report(
                &anyhow::Error::new(err),
                Some("a CPU run needs none of this: --device cpu"),
            );
            exit::CONFIG_ERROR
        }
        _ => exit::OK,
    }
}

#[cfg(feature = "cuda")]
fn cuda_check() -> Result<
    embed_collections::gpu::runtime::CudaReport,
    embed_collections::gpu::runtime::CudaRuntimeError,
> {
    embed_collections::gpu::cuda::check_runtime(
        &embed_collections::gpu::runtime::WantedDevices::All,
    )
}

#[cfg(not(feature = "cuda"))]
fn cuda_check() -> Result<
    embed_collections::gpu::runtime::CudaReport,
    embed_collections::gpu::runtime::CudaRuntimeError,
> {
    unreachable!("CudaBuild::current() is None without the cuda feature")
}

/// `embed-collections fetch-models`: a wheel's fetcher (`python -m embed_collections.fetch_models`
/// with the Python that installed this binary, found beside it, else `python3`), else a
/// checkout's scripts/fetch-models.sh.
fn fetch_models(args: &FetchModelsArgs) -> i32 {
    const MODULE: &str = "embed_collections.fetch_models";
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf));
    let mut pythons: Vec<std::path::PathBuf> = bin_dir
        .iter()
        .flat_map(|dir| [dir.join("python3"), dir.join("python")])
        .filter(|path| path.is_file())
        .collect();
    pythons.push("python3".into());
    let installed = pythons.into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {MODULE}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    let checkout = std::path::Path::new("scripts/fetch-models.sh");
    let mut command = match (installed, checkout.is_file()) {
        (Some(python), _) => {
            let mut command = std::process::Command::new(python);
            command.args(["-m", MODULE]);
            command
        }
        (None, true) => {
            let mut command = std::process::Command::new("bash");
            command.arg(checkout);
            command
        }
        (None, false) => {
            eprintln!("error: no model fetcher here: install the wheel (pip install embed-collections puts {MODULE} in site-packages), or run scripts/fetch-models.sh from a checkout of the repository");
            return exit::CONFIG_ERROR;
        }
    };
    if let Some(dir) = &args.models_dir {
        command.env("EMBED_COLLECTIONS_MODELS_DIR", dir);
    }
    match command.status() {
        Ok(status) if status.success() => exit::OK,
        Ok(status) => {
            eprintln!("error: fetching the models failed ({status})");
            exit::FAILURE
        }
        Err(err) => {
            eprintln!("error: cannot start the model fetcher: {err}");
            exit::FAILURE
        }
    }
}

/// `embed-collections embed-queries`: a query file's vectors, as a run makes them.
fn embed_queries(args: &EmbedQueriesArgs, env: &Environment) -> i32 {
    let overrides = config::Overrides {
        no_sparse: args.no_sparse,
        no_rerank: true,
        device: args.device.clone(),
        models_dir: args.models_dir.clone(),
        quiet: args.quiet,
        set: args.set.clone(),
        ..config::Overrides::default()
    };
    let Some(config) = models_config(args.config.as_deref(), &overrides, None, env) else {
        return exit::CONFIG_ERROR;
    };
    init_logging(
        config.telemetry.log_format,
        if args.quiet { -1 } else { 0 },
        env,
    );
    let manager = model_manager(config.models.dir.clone(), env);
    match BatchRunner::new(config, manager).embed_queries(&args.queries, &args.output) {
        Ok(done) if done.failed == 0 => exit::OK,
        Ok(done) => {
            tracing::warn!(failed = done.failed, "some queries have no sparse vector");
            exit::PARTIAL_FAILURE
        }
        Err(err) => fail(err, None),
    }
}

/// The settings of a command that loads models but reads no input and writes no output
/// directory; `None` after reporting why they are invalid.
fn models_config(
    file: Option<&std::path::Path>,
    overrides: &config::Overrides,
    hint: Option<&str>,
    env: &Environment,
) -> Option<config::RunConfig> {
    match config::resolve_for_models(file, env, overrides) {
        Ok(config) => Some(config),
        Err(err) => {
            report(
                &anyhow::Error::new(err).context("invalid configuration"),
                hint,
            );
            None
        }
    }
}

/// `embed-collections serve`: the run's models over HTTP until SIGTERM or SIGINT.
fn serve(args: &ServeArgs, env: &Environment) -> i32 {
    use embed_collections::serve::ServeError;
    let overrides = config::Overrides {
        no_sparse: args.no_sparse,
        no_rerank: args.no_rerank,
        device: args.device.clone(),
        models_dir: args.models_dir.clone(),
        quiet: args.quiet,
        listen: args.listen.clone(),
        api_key_file: args.api_key_file.clone(),
        set: args.set.clone(),
        ..config::Overrides::default()
    };
    let hint = "see docs/serving.md and `embed-collections serve --help`";
    let Some(config) = models_config(args.config.as_deref(), &overrides, Some(hint), env) else {
        return exit::CONFIG_ERROR;
    };
    let verbosity = if args.quiet {
        -1
    } else {
        args.verbose.min(2) as i8
    };
    init_logging(config.telemetry.log_format, verbosity, env);
    let manager = model_manager(config.models.dir.clone(), env);
    match embed_collections::serve::serve(config, manager) {
        Ok(()) => exit::OK,
        Err(err) => {
            let (code, hint) = match &err {
                ServeError::ApiKeyFile { .. } | ServeError::EmptyApiKey { .. } => {
                    (exit::CONFIG_ERROR, Some("check serve.api_key_file / --api-key-file"))
                }
                ServeError::Bind { .. } => (
                    exit::CONFIG_ERROR,
                    Some("is another process listening there? choose another --listen address"),
                ),
                ServeError::Engine(_) => (
                    exit::FAILURE,
                    Some("run scripts/fetch-models.sh, or point models.dir / --models-dir at the fetched models"),
                ),
                ServeError::Runtime(_) | ServeError::WarmUp(_) => (exit::FAILURE, None),
            };
            report(&anyhow::Error::new(err), hint);
            code
        }
    }
}

/// `error: …`, then each cause, then a hint when there is an obvious next step.
/// Reports `err` (under `context`, if any) with its hint and returns its class's exit code.
fn fail<E>(err: E, context: Option<&'static str>) -> i32
where
    E: Classified + Send + Sync + 'static,
{
    let (code, hint) = (err.class().exit_code(), err.hint());
    let err = anyhow::Error::new(err);
    let err = match context {
        Some(context) => err.context(context),
        None => err,
    };
    report(&err, hint);
    code
}

fn report(err: &anyhow::Error, hint: Option<&str>) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

/// The +10 % rule for one collection, in one line under its stage rows.
fn print_overhead(overhead: &embed_collections::export::OverheadReport) {
    let spent = overhead.sparse_s + overhead.fusion_s + overhead.rerank_s;
    let verdict = match (overhead.ratio, overhead.within_limit) {
        (Some(ratio), Some(true)) => format!("{:.1} % of dense: within", 100.0 * ratio),
        (Some(ratio), _) => format!("{:.1} % of dense: over", 100.0 * ratio),
        (None, _) => "no dense time to compare with".to_string(),
    };
    let Some(plan) = &overhead.rerank_budget else {
        println!(
            "{:<20} overhead: sparse + fusion + rerank {spent:.2} s = {verdict} the {:.0} % rule \
             ({} rerank pairs, {} {} queries)",
            "",
            100.0 * overhead.limit,
            overhead.rerank_pairs,
            overhead.queries,
            overhead.queries_from
        );
        return;
    };
    use embed_collections::ranking::budget::PlanOutcome;
    let depth = match plan.outcome {
        PlanOutcome::AllFit => format!("all {} candidates fit", plan.candidates),
        PlanOutcome::Limited => format!(
            "reranked {} of {} candidates per query",
            plan.depth, plan.candidates
        ),
        PlanOutcome::FloorOverBudget => format!(
            "spent before the floor of {} candidates ran: only the floor was reranked",
            plan.floor
        ),
        PlanOutcome::NoMeasurement => format!(
            "no pair cost measured: the floor of {} candidates",
            plan.floor
        ),
    };
    println!(
        "{:<20} overhead: sparse + fusion + rerank {spent:.2} s = {verdict} the {:.0} % budget \
         ({depth}; planned {:.1} %; {} rerank pairs, {} {} queries)",
        "",
        100.0 * plan.budget,
        100.0 * plan.predicted_ratio,
        overhead.rerank_pairs,
        overhead.queries,
        overhead.queries_from
    );
}

/// The `--reuse` lines of a collection: what was reused, what was embedded and why, and the
/// changes written to `changes.jsonl`.
fn print_reuse(reuse: &embed_collections::export::manifest::ReuseReport) {
    let because: Vec<String> = reuse
        .embedded_because
        .iter()
        .map(|(why, n)| format!("{n} {}", why.replace('_', " ")))
        .collect();
    println!(
        "  reuse: {} chunks reused, {} embedded{}",
        reuse.reused,
        reuse.embedded,
        if because.is_empty() {
            String::new()
        } else {
            format!(" ({})", because.join(", "))
        }
    );
    let changes = &reuse.changes;
    println!(
        "  changes: {} added, {} updated, {} deleted, {} unchanged (changes.jsonl)",
        changes.added, changes.updated, changes.deleted, changes.unchanged
    );
    if let Some(pairs) = &reuse.rerank_pairs {
        println!(
            "  rerank: {} pair scores reused, {} computed",
            pairs.reused, pairs.computed
        );
    }
}

/// A per-collection table on stdout (the result the user asked for); the manifest has the
/// full detail.
fn print_summary(outcome: &embed_collections::pipeline::RunOutcome) {
    let label = |value: serde_json::Result<serde_json::Value>| {
        value
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    // Several dense models: one dense row each, named `dense:<vector name>`.
    let stage_width = outcome
        .collections
        .iter()
        .flat_map(|report| report.stages.get(&embed_collections::stage::Stage::Dense))
        .filter(|dense| dense.runs.len() > 1)
        .flat_map(|dense| dense.runs.iter().map(|run| run.model.chars().count() + 6))
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:<20} {:<stage_width$} {:<14} {:>8} {:>9} {:>11} {:>10} {:>9}",
        "collection", "stage", "status", "items", "time s", "items/s", "tokens/s", "fallback"
    );
    for report in &outcome.collections {
        println!(
            "{:<20} {:<stage_width$} {:<14} {:>8}   ({} chunks read, {} skipped, {} points)",
            report.name,
            "input",
            label(serde_json::to_value(report.status)),
            report.chunks,
            report.chunks,
            report.skipped.total,
            report.points
        );
        for (stage, stage_report) in &report.stages {
            let status = label(serde_json::to_value(stage_report.status));
            if stage_report.runs.is_empty() {
                println!("{:<20} {:<stage_width$} {:<14}", "", stage.as_str(), status);
            }
            let per_model =
                *stage == embed_collections::stage::Stage::Dense && stage_report.runs.len() > 1;
            for run in &stage_report.runs {
                let name = if per_model {
                    format!("dense:{}", run.model)
                } else {
                    stage.as_str().to_string()
                };
                println!(
                    "{:<20} {:<stage_width$} {:<14} {:>8} {:>9.2} {:>11.1} {:>10.0} {:>9}",
                    "",
                    name,
                    status,
                    run.items,
                    run.latency_s,
                    run.items_per_s,
                    run.tokens_per_s,
                    run.fallbacks + run.missing
                );
            }
        }
        if let Some(overhead) = &report.overhead {
            print_overhead(overhead);
        }
        if let Some(auto) = report.ranking.as_ref().and_then(|r| r.auto.as_ref()) {
            println!(
                "  fusion auto: {} ({} pairs judged in {:.2} s, counted in fusion): {}",
                auto.choice.name, auto.pairs_scored, auto.seconds, auto.choice.reason
            );
        }
        if let Some(reuse) = &report.reuse {
            print_reuse(reuse);
        }
        if let Some(error) = &report.error {
            println!("  error: {error}");
        }
    }
    for report in &outcome.collections {
        if let Some(evaluation) = &report.evaluation {
            // Dense lists first (`dense`, or `dense:<name>` per model), then the others in
            // pipeline order.
            let order = |list: &str| match list {
                "sparse" => 1,
                "fused" => 2,
                "reranked" => 3,
                _ if list == "dense" || list.starts_with("dense:") => 0,
                _ => 4,
            };
            let mut rows: Vec<(String, embed_collections::eval::Metrics)> = evaluation
                .lists
                .iter()
                .map(|(list, metrics)| (list.clone(), metrics.clone()))
                .collect();
            rows.sort_by_key(|(list, _)| order(list));
            println!(
                "\n{} — evaluation against {}:",
                report.name, evaluation.qrels
            );
            if let Some(line) = evaluation.coverage.describe() {
                println!("  {line}");
            }
            if !rows.is_empty() {
                print!("{}", embed_collections::eval::format_table(&rows));
            }
        }
    }
    println!("manifest: {}", outcome.manifest.display());
}
