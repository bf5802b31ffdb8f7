//! `dnalm study`: wires a study file to `dnalm_study`, with Ctrl-C handling.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use clap::Args;
use dnalm_study::{run_study, StudySpec};

/// Arguments of `dnalm study`.
#[derive(Args)]
pub struct StudyArgs {
    /// The study file (TOML): base config, knobs, seeds, budget, tasks; see `studies/`.
    #[arg(long)]
    grid: PathBuf,
    /// Output directory (study.md, study.json, plots/, cells/). Default: runs/study-<name>.
    /// Running the same study into the same directory resumes it.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// List the cells and their budgets, then exit without training.
    #[arg(long)]
    dry_run: bool,
    /// Write the report from the cells finished so far (e.g. while the study runs elsewhere)
    /// without running anything.
    #[arg(long)]
    report_only: bool,
    #[command(flatten)]
    device: crate::DeviceFlag,
    /// When a cell trains with `train.activation_checkpointing`, keep freed memory for reuse
    /// (faster) instead of returning it to the kernel (smaller peak), as `pretrain
    /// --keep-freed-memory` does.
    #[arg(long)]
    keep_freed_memory: bool,
}

/// Runs `dnalm study`.
pub fn run(args: StudyArgs) -> anyhow::Result<()> {
    let spec = StudySpec::load(&args.grid)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("study-{}", spec.name)));
    if args.dry_run {
        spec.check_cells()?;
        spec.check_output(&output)?;
        for c in &spec.cells() {
            println!("{}\t{}\t{}", c.id, c.label(), c.set.join(" "));
        }
        return Ok(());
    }
    // An absent device is one line here, not after the baselines have run.
    args.device.open()?;
    if !args.report_only && !args.keep_freed_memory && spec.checkpoints_activations()? {
        crate::pretrain::favour_memory();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(args.report_only));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving the current cell's checkpoint (Ctrl-C again to abort)");
    });
    let t0 = Instant::now();
    let mut progress = |m: &str| eprintln!("[{:>7.1}s] {m}", t0.elapsed().as_secs_f64());
    let study = run_study(&spec, &output, args.device.name()?, stop, &mut progress)?;
    for t in &study.analysis {
        let class = &t.class;
        eprintln!(
            "{}: {class}; best {} {:.3}, worst {} {:.3}{}",
            t.task,
            t.best.0,
            t.best.1,
            t.worst.0,
            t.worst.1,
            t.best_baseline
                .as_ref()
                .map(|(n, v)| format!("; best baseline {n} {v:.3}"))
                .unwrap_or_default()
        );
    }
    let report = output.join("study.md");
    if args.report_only {
        eprintln!(
            "wrote {} from the {} finished cell run(s)",
            report.display(),
            study.results.len()
        );
    } else if study.complete {
        eprintln!(
            "wrote {} ({:.0} s)",
            report.display(),
            t0.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "stopped; {} has the cells so far. Resume with: dnalm study --grid {} --output {}",
            report.display(),
            args.grid.display(),
            output.display()
        );
    }
    Ok(())
}
