//! `dnalm pretrain`: wires a run config to the trainer, with a progress bar and Ctrl-C handling.

use std::{path::PathBuf, sync::atomic::Ordering, time::Duration};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use dnalm_tokenize::{Tokenizer, TokenizerKind};
use dnalm_train::{
    trainer::{EvalRecord, Observer, StepRecord},
    RunConfig, RunOptions, Trainer,
};

/// Arguments of `dnalm pretrain`.
#[derive(Args)]
pub struct PretrainArgs {
    /// Run config (TOML); see `configs/` for one per objective.
    #[arg(short, long)]
    config: PathBuf,
    /// Run directory (checkpoints, metrics.jsonl, run.toml). Default: runs/<config name>.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Continue from the latest checkpoint in the run directory.
    #[arg(long)]
    resume: bool,
    /// Override a config key, e.g. `--set train.steps=200 --set optim.lr=1e-3` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Stop with a checkpoint after this step, as if interrupted (resume later with --resume).
    #[arg(long)]
    stop_at: Option<u64>,
    /// Print the resolved config and the model size, then exit without training.
    #[arg(long)]
    dry_run: bool,
    /// After training, score order-0..K Markov (k-mer frequency) predictors on the same
    /// validation positions and write `markov_baseline.json` (0 = skip).
    #[arg(long, default_value_t = 0, value_name = "K")]
    markov_baseline: usize,
    /// Training batches the Markov baseline counts (default: 200).
    #[arg(long, default_value_t = 200)]
    baseline_batches: u64,
    #[command(flatten)]
    device: crate::DeviceFlag,
    /// Data-parallel training on these devices, comma-separated (e.g. `cuda:0,cuda:1`; the same
    /// as `--set train.devices=[...]`): a model replica on each, every step's micro-batches
    /// shared between them, gradients summed with burn's all-reduce. `train.accumulation` must
    /// be a multiple of their number.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    devices: Vec<String>,
    /// With `train.activation_checkpointing`, keep freed memory for reuse, as every other run
    /// does, instead of returning it to the kernel: faster, but a larger peak (6-layer
    /// Caduceus-PS, 131 k tokens: 1,339 tokens/s in 9.0 GiB kept, 775 in 7.0 GiB returned).
    #[arg(long)]
    keep_freed_memory: bool,
}

struct Progress {
    bar: ProgressBar,
    last_eval: Option<EvalRecord>,
    plain: bool,
}

impl Observer for Progress {
    fn on_step(&mut self, r: &StepRecord, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(r.step);
        let eval = self
            .last_eval
            .as_ref()
            .map(|e| format!(" | valid loss {:.3} acc {:.3}", e.loss, e.accuracy))
            .unwrap_or_default();
        self.bar.set_message(format!(
            "loss {:.4} acc {:.3} lr {:.2e} {:.0} tok/s{eval}",
            r.loss, r.accuracy, r.lr, r.tokens_per_s
        ));
        // Without a terminal, a line every 10% so logs show progress.
        if self.plain && r.step.is_multiple_of((total / 10).max(1)) {
            eprintln!(
                "step {}/{total} loss {:.4} acc {:.3} {:.0} tok/s",
                r.step, r.loss, r.accuracy, r.tokens_per_s
            );
        }
    }
    fn on_eval(&mut self, r: &EvalRecord) {
        if self.plain {
            eprintln!(
                "step {} valid loss {:.4} perplexity {:.3} accuracy {:.4}",
                r.step, r.loss, r.perplexity, r.accuracy
            );
        }
        self.last_eval = Some(r.clone());
    }
    fn on_note(&mut self, note: &str) {
        self.bar.suspend(|| eprintln!("note: {note}"));
    }
}

/// Refuses a model whose training state (f32 weights, gradients and AdamW's two moments: 16
/// bytes a parameter) exceeds this machine's memory, in one line, before anything is allocated
/// (a mistyped `--set model.d_model=1048576` used to abort the process). Linux only; elsewhere
/// the model config's own size limit applies.
fn check_training_memory(model: &dnalm_model::ModelConfig) -> anyhow::Result<()> {
    let Some(total) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        })
    else {
        return Ok(());
    };
    let params = model.parameter_count() as u64;
    let needed = params.saturating_mul(16);
    if needed > total {
        anyhow::bail!(
            "model: {params} parameters (n_layers = {}, d_model = {}, d_ffn = {}) need about {:.1} GiB \
             to train (weights, gradients, optimiser state), more than this machine's {:.1} GiB",
            model.n_layers,
            model.d_model,
            model.d_ffn,
            needed as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

/// For runs with activation checkpointing, asked for when memory is the limit: freed buffers go
/// back to the kernel after mimalloc's own default delay (a 1 s delay measured no faster) rather
/// than being kept for speed (README "Long context: Caduceus", kept against returned).
pub(crate) fn favour_memory() {
    dnalm_model::allocator::return_freed_memory(std::time::Duration::from_millis(10));
}

/// Runs `dnalm pretrain`.
pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    let mut overrides = args.overrides.clone();
    if !args.devices.is_empty() {
        let names: Vec<String> = args.devices.iter().map(|d| format!("{d:?}")).collect();
        overrides.push(format!("train.devices=[{}]", names.join(",")));
    }
    let config = RunConfig::load(&args.config)?.with_overrides(&overrides)?;
    let resolved = config.resolve()?;
    check_training_memory(&resolved.model)?;
    if resolved.config.train.activation_checkpointing && !args.keep_freed_memory {
        favour_memory();
    }
    let devices = if resolved.config.train.devices.is_empty() {
        vec![args.device.open()?.autodiff()]
    } else {
        if !args.device.is_default() {
            anyhow::bail!(
                "--device and train.devices both name devices; give one (train.devices = {:?})",
                resolved.config.train.devices
            );
        }
        resolved
            .config
            .train
            .devices
            .iter()
            .map(|name| Ok(name.parse::<dnalm_model::DeviceName>()?.open()?.autodiff()))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    // The dry run makes every check the real run makes before its first step: the data is
    // read and split and both pipelines are built (one validation path); nothing is written.
    let config_text = resolved.config.to_toml();
    let trainer = Trainer::on_devices(resolved, &output, devices)
        .with_context(|| format!("preparing {}", args.config.display()))?;
    let run = trainer.run_config();
    let tokens = run.tokenizer.window_tokens(run.config.data.context);
    eprintln!(
        "model: {:?}, {} layers, d = {}, {}, {:.2} M parameters; tokenizer {} ({} tokens), {}{} tokens per {}-base window",
        run.model.architecture,
        run.model.n_layers,
        run.model.d_model,
        run.model.mixer_summary(),
        run.model.parameter_count() as f64 / 1e6,
        run.config.tokenizer.spec,
        run.model.vocab_size,
        if run.tokenizer.kind() == TokenizerKind::Bpe { "at most " } else { "" },
        tokens,
        run.config.data.context
    );
    if !run.config.train.devices.is_empty() {
        eprintln!(
            "data parallel on {} devices ({}): {} micro-batches of {} windows per step, {} per device",
            run.config.train.devices.len(),
            run.config.train.devices.join(", "),
            run.config.train.accumulation,
            run.config.train.batch_size,
            run.config.train.accumulation / run.config.train.devices.len()
        );
    }
    if args.dry_run {
        print!("{config_text}");
        return Ok(());
    }
    let options = RunOptions {
        resume: args.resume,
        stop_at: args.stop_at,
        ..Default::default()
    };
    let stop = options.stop.clone();
    let flag = stop.clone();
    // A second Ctrl-C exits at once. SIGTERM and SIGHUP (a scheduler's kill) stop the same way.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to abort)"
        );
    });
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if plain {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    let mut progress = Progress {
        bar,
        last_eval: None,
        plain,
    };
    let summary = trainer.run(&options, &mut progress)?;
    progress.bar.finish_and_clear();
    let what = if summary.interrupted {
        "stopped"
    } else {
        "finished"
    };
    eprintln!(
        "{what} at step {} ({:.0} tokens/s); run directory {}",
        summary.step,
        summary.tokens_per_s,
        output.display()
    );
    if let Some(e) = &summary.last_eval {
        eprintln!(
            "validation at step {}: loss {:.4}, perplexity {:.3}, accuracy {:.4}",
            e.step, e.loss, e.perplexity, e.accuracy
        );
    }
    if let Some(c) = &summary.checkpoint {
        eprintln!("checkpoint: {}", c.display());
    }
    if summary.interrupted {
        eprintln!(
            "resume with: dnalm pretrain --config {} --output {} --resume",
            args.config.display(),
            output.display()
        );
    }
    if args.markov_baseline > 0 {
        let predictor = dnalm_train::baseline::MarkovPredictor::fit(
            trainer.training_batches(args.baseline_batches),
            args.markov_baseline,
        );
        let scores = predictor.evaluate(&trainer.validation_batches());
        let best = scores
            .iter()
            .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
            .copied();
        if let Some(b) = best {
            eprintln!(
                "best Markov baseline: order {} accuracy {:.4} on the same {} validation positions",
                b.order, b.accuracy, b.targets
            );
        }
        let path = output.join("markov_baseline.json");
        crate::write_output(&path, &(serde_json::to_string_pretty(&scores)? + "\n"))?;
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
