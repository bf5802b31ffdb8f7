//! `dnalm multitask`: one encoder fine-tuned on several tasks, the groups planned from the
//! tasks' gradient affinity, every task compared with its single-task model.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use clap::Args;
use dnalm_eval::{
    features::embed::{parse_pooling, ModelSpec},
    multitask::{check_request, parse_groups, Multitask, MultitaskOptions, TaskSampling},
};
use dnalm_model::heads::Pooling;

use crate::{
    eval::{load_task, FinetuneFlags},
    write_output, DeviceFlag,
};

/// Arguments of `dnalm multitask`.
#[derive(Args)]
pub struct MultitaskArgs {
    /// Model directory (`DIR` or `random:DIR` to train from scratch).
    #[arg(short, long)]
    model: String,
    /// Tasks, comma-separated or repeated: dnalm task directories, or `FORMAT:DIR` (`gue`,
    /// `nt`, `genomic-benchmarks`, `bend`). Per-base tasks are not supported.
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
    /// The reference genome FASTA a BEND task's coordinates refer to.
    #[arg(long)]
    genome: Option<PathBuf>,
    /// Output directory: report.md, report.json (and plan.md, plan.json with a plan), and
    /// models/<task>/, each task's fine-tuned checkpoint from its group's first seed.
    #[arg(short, long)]
    output: PathBuf,
    /// Only plan: measure the inter-task gradient affinity in a short joint run (plus LogME
    /// and the probe affinity on the frozen model), propose groups, train nothing more.
    #[arg(long, conflicts_with = "groups")]
    plan: bool,
    /// Steps of the plan's joint run (uniform task draw; 25 lookaheads spread over it).
    #[arg(long, default_value_t = 200)]
    plan_steps: usize,
    /// Groups to train: `auto` (the plan's proposal), or names like `A+B,C` (every task in one
    /// group). Default: all tasks in one group.
    #[arg(long)]
    groups: Option<String>,
    /// How each step's task is drawn: `proportional` (to its training rows), `uniform`, or
    /// `temperature=T` (rows^(1/T)).
    #[arg(long, default_value = "proportional")]
    sampling: TaskSampling,
    /// Independent runs of every group and every single-task model (gain = mean ± sd).
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Seed of the first run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pooling for the heads: mean, cls, max or last (the last sequence token: for causal
    /// models, the one state that has seen the whole sequence).
    #[arg(long, default_value = "mean", value_parser = parse_pooling)]
    pooling: Pooling,
    /// Fine-tuning budget and settings, per task: a group's joint run takes the sum of its
    /// tasks' budgets (--epochs, --max-steps), a task alone its own. With `--lora` a group
    /// shares one set of adapters (each task saves them with its head); `--lr auto` is
    /// single-task only.
    #[command(flatten)]
    finetune: FinetuneFlags,
    #[command(flatten)]
    device: DeviceFlag,
}

pub fn run(args: MultitaskArgs) -> anyhow::Result<()> {
    let tasks = args
        .tasks
        .iter()
        .map(|t| load_task(t, args.genome.as_deref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = ModelSpec::parse(&args.model);
    let mut finetune = args.finetune.options(args.pooling, args.seeds, args.seed);
    finetune.fit.device = args.device.name()?;
    let options = MultitaskOptions {
        finetune,
        sampling: args.sampling,
    };
    // Bad requests are refused before the model is loaded.
    check_request(&tasks, &options.finetune)?;
    let names: Vec<String> = tasks.iter().map(|t| t.spec.name.clone()).collect();
    let named_groups = match args.groups.as_deref() {
        Some("auto") | None => None,
        Some(g) => Some(parse_groups(g, &names)?),
    };
    let t0 = Instant::now();
    let mut progress = |m: &str| eprintln!("[{:>6.1}s] {m}", t0.elapsed().as_secs_f64());
    progress("tokenising the tasks and fitting each one's linear probe on the frozen model");
    let mt = Multitask::new(&spec, &tasks, options)?;
    let plan = match (&args.groups, args.plan) {
        (Some(g), _) if g == "auto" => Some(mt.plan(args.plan_steps, &mut progress)?),
        (None, true) => Some(mt.plan(args.plan_steps, &mut progress)?),
        _ => None,
    };
    if let Some(plan) = &plan {
        write_output(&args.output.join("plan.md"), &plan.markdown())?;
        write_output(
            &args.output.join("plan.json"),
            &serde_json::to_string_pretty(plan)?,
        )?;
        eprintln!(
            "planned in {:.1} s: groups {}",
            t0.elapsed().as_secs_f64(),
            plan.groups
                .iter()
                .map(|g| format!("{{{}}}", g.join(", ")))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if args.plan {
            println!("{}", plan.markdown());
            return Ok(());
        }
    }
    let groups = match (named_groups, &plan) {
        (Some(groups), _) => groups,
        (None, Some(plan)) => plan.group_indices.clone(),
        (None, None) => vec![(0..names.len()).collect()],
    };
    let report = mt
        .train(
            &groups,
            plan,
            Some(&args.output.join("models")),
            &mut progress,
        )
        .context("multitask training")?;
    write_output(
        &args.output.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let md = report.markdown();
    write_output(&args.output.join("report.md"), &md)?;
    eprintln!(
        "trained in {:.1} s; report: {}",
        t0.elapsed().as_secs_f64(),
        args.output.join("report.md").display()
    );
    println!("{md}");
    Ok(())
}
