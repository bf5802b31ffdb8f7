//! Writes a bench's `report.md`, `results.json`, `relevance.csv` and plots (per-task bars with
//! error bars, relevance heatmap, task affinity heatmaps), each file atomically.

pub mod plot;

use std::{fmt::Write as _, io::Write as _, path::Path};

use dnalm_seq::suite::SuiteFormat;

use crate::{
    bench::{BenchResults, TaskResult},
    relevance::Affinity,
    report::plot::{bars, heatmap, lines, Bar, Series},
    EvalError,
};

/// Writes `text` to `path` atomically (temp file + rename).
pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), EvalError> {
    Ok(dnalm_seq::write_atomic(path, |w| {
        w.write_all(text.as_bytes())
    })?)
}

/// The scores × scopes table of Spearman's rho with fine-tuning, each with its 95% interval.
fn relevance_correlation_table(md: &mut String, correlations: &[crate::bench::ScoreCorrelation]) {
    let mut scopes: Vec<Option<&str>> = Vec::new();
    let mut scores: Vec<&str> = Vec::new();
    for c in correlations {
        if !scopes.contains(&c.task.as_deref()) {
            scopes.push(c.task.as_deref());
        }
        if !scores.contains(&c.score.as_str()) {
            scores.push(&c.score);
        }
    }
    let _ = writeln!(
        md,
        "\nSpearman correlation of each score with the fine-tuned result, with a 95% bootstrap \
         interval over the pairs: over every (model, task) pair, and within each task over its \
         models.\n"
    );
    let header: Vec<String> = scopes
        .iter()
        .map(|s| match s {
            None => "all pairs".to_string(),
            Some(task) => format!("`{task}`"),
        })
        .collect();
    let _ = writeln!(md, "| score | {} |", header.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(scopes.len()));
    for score in scores {
        let cells: Vec<String> = scopes
            .iter()
            .map(|scope| {
                correlations
                    .iter()
                    .find(|c| c.score == score && c.task.as_deref() == *scope)
                    .map_or("—".into(), |c| {
                        let c = c.correlation;
                        format!(
                            "{} [{}, {}] (n = {})",
                            fmt(c.rho),
                            fmt(c.ci[0]),
                            fmt(c.ci[1]),
                            c.n
                        )
                    })
            })
            .collect();
        let _ = writeln!(md, "| {score} | {} |", cells.join(" | "));
    }
    let _ = writeln!(md);
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "—".into()
    }
}

/// Markdown rows of a task × task matrix: `| label of the row's task | cell | … |`, one row per
/// task, each value written by `cell` (the report's affinity tables, the multitask plan's).
pub(crate) fn matrix_rows(
    md: &mut String,
    tasks: &[String],
    label: impl Fn(&str) -> String,
    matrix: &[Vec<f64>],
    cell: impl Fn(f64) -> String,
) {
    for (task, row) in tasks.iter().zip(matrix) {
        let cells: Vec<String> = row.iter().map(|&v| cell(v)).collect();
        let _ = writeln!(md, "| {} | {} |", label(task), cells.join(" | "));
    }
}

/// Writes everything under `dir` (created if needed); returns the report's path.
pub fn write_report(dir: &Path, results: &BenchResults) -> Result<std::path::PathBuf, EvalError> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| EvalError::io(&plots, e))?;
    let json = serde_json::to_string_pretty(results).map_err(EvalError::Json)?;
    write_text(&dir.join("results.json"), &json)?;

    let mut md = String::from("# dnalm bench\n\n");
    let _ = writeln!(
        md,
        "Models: {}. Tasks: {}. Every number is a held-out **test** metric. Probes: the fit on \
         all training rows ± the sd of {} refits that each leave out one fold (hyperparameters \
         chosen on the validation split). CNN and fine-tuning: mean ± sd over {} seeds. \
         Baselines use no pretraining.\n",
        if results.config.models.is_empty() {
            "none (baselines only)".to_string()
        } else {
            results
                .config
                .models
                .iter()
                .map(|m| format!("`{}`", m.name))
                .collect::<Vec<_>>()
                .join(", ")
        },
        results.tasks.len(),
        results.config.probe.folds,
        results.config.seeds
    );
    for note in &results.notes {
        let _ = writeln!(md, "Note: {note}\n");
    }
    for task in &results.tasks {
        task_section(&mut md, &plots, task)?;
    }
    if !results.relevance.is_empty() {
        relevance_section(&mut md, dir, &plots, results)?;
    }
    if !results.layer_curves.is_empty() {
        layer_section(&mut md, &plots, &results.layer_curves)?;
    }
    for a in &results.affinity {
        affinity_section(&mut md, &plots, a)?;
    }
    let path = dir.join("report.md");
    write_text(&path, &md)?;
    Ok(path)
}

/// One task's table of every entry (headline metric first) and its bar plot.
fn task_section(md: &mut String, plots: &Path, task: &TaskResult) -> Result<(), EvalError> {
    let _ = writeln!(
        md,
        "## {}\n\n{} train / {} valid / {} test rows. Headline metric: **{}**.\n",
        task.task, task.rows[0], task.rows[1], task.rows[2], task.headline
    );
    if task.format != SuiteFormat::Dnalm || !task.notes.is_empty() {
        let _ = writeln!(
            md,
            "Read as a **{}** task: {}.\n",
            task.format,
            task.notes.join("; ")
        );
    }
    let metric_names: Vec<String> = {
        let mut names: Vec<String> = task
            .entries
            .iter()
            .flat_map(|e| e.metrics.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        // Headline first.
        names.sort_by_key(|n| (n != &task.headline, n.clone()));
        names
    };
    // Multi-label metrics per label (`auroc/NAME`) get a table of their own.
    let (per_label, overall): (Vec<String>, Vec<String>) =
        metric_names.into_iter().partition(|n| n.contains('/'));
    entries_table(md, task, &overall, true);
    if !per_label.is_empty() {
        let _ = writeln!(md, "\nPer label (multi-label) or class (per-base):\n");
        entries_table(md, task, &per_label, false);
    }
    comparisons_table(md, task);
    anchors_table(md, task);
    let bar_data: Vec<Bar> = task
        .entries
        .iter()
        .map(|e| {
            let s = e.metrics.get(&task.headline);
            Bar {
                label: format!("{} {}", e.subject, e.method),
                value: s.map_or(f64::NAN, |s| s.mean),
                error: s.map_or(0.0, |s| s.sd),
            }
        })
        .collect();
    let png = format!("{}_bars.png", safe(&task.task));
    bars(
        &plots.join(&png),
        &format!("{} — test {}", task.task, task.headline),
        &task.headline,
        &bar_data,
    )?;
    let _ = writeln!(md, "\n![{}](plots/{png})\n", task.task);
    Ok(())
}

/// The published numbers for a standard suite's task, beside this run's best of that metric.
fn anchors_table(md: &mut String, task: &TaskResult) {
    let anchors = crate::anchors::for_task(task.format, &task.task);
    let Some(first) = anchors.first() else {
        return;
    };
    let ours = task
        .entries
        .iter()
        .filter_map(|e| e.metrics.get(&first.metric).map(|s| (e, s)))
        .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
    let _ = writeln!(
        md,
        "\nPublished on this task ({}: {}, {}):\n\n| model | {} |\n|---|---|",
        first.protocol, first.source, first.source_table, first.metric
    );
    for a in &anchors {
        let _ = writeln!(md, "| {} (published) | {:.3} |", a.model, a.value);
    }
    if let Some((e, s)) = ours {
        let _ = writeln!(md, "| **{} {} (this run)** | {} |", e.subject, e.method, s);
    }
}

/// The per-layer probing curves: a table per task (models × layers) and a line plot.
fn layer_section(
    md: &mut String,
    plots: &Path,
    curves: &[crate::bench::LayerCurve],
) -> Result<(), EvalError> {
    let _ = writeln!(
        md,
        "## Which layer carries the signal\n\nThe linear probe on each layer's pooled embedding \
         alone (layer 0 = token embeddings, i = block i, the last = the final, normalised \
         output); test headline, the full-data fit ± the refits' sd.\n"
    );
    let mut tasks: Vec<&str> = curves.iter().map(|c| c.task.as_str()).collect();
    tasks.dedup();
    for task in tasks {
        let rows: Vec<&crate::bench::LayerCurve> =
            curves.iter().filter(|c| c.task == task).collect();
        let depth = rows.iter().map(|c| c.layers.len()).max().unwrap_or(0);
        let metric = rows.first().map_or("mcc", |c| c.metric.as_str());
        let _ = writeln!(
            md,
            "### {task} ({metric})\n\n| model | {} | best |\n|---|{}---|",
            (0..depth)
                .map(|l| format!("layer {l}"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(depth)
        );
        for c in &rows {
            let best = (0..c.scores.len())
                .filter(|&i| c.scores[i].mean.is_finite())
                .max_by(|&a, &b| c.scores[a].mean.total_cmp(&c.scores[b].mean));
            let cells: Vec<String> = (0..depth)
                .map(|i| c.scores.get(i).map_or("—".into(), |s| s.to_string()))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                c.model,
                cells.join(" | "),
                best.map_or("—".into(), |i| format!("layer {}", c.layers[i]))
            );
        }
        let series: Vec<Series> = rows
            .iter()
            .map(|c| Series {
                name: c.model.clone(),
                points: c.scores.iter().map(|s| (s.mean, s.sd)).collect(),
            })
            .collect();
        let png = format!("{}_layers.png", safe(task));
        lines(
            &plots.join(&png),
            &format!("{task} — probe by layer"),
            "layer",
            metric,
            &(0..depth).map(|l| l.to_string()).collect::<Vec<_>>(),
            &series,
        )?;
        let _ = writeln!(md, "\n![{task} by layer](plots/{png})\n");
    }
    Ok(())
}

/// One row per entry of `task` with the metrics `names` (and, with `details`, what was chosen
/// and the seconds it took).
fn entries_table(md: &mut String, task: &TaskResult, names: &[String], details: bool) {
    let extra = if details { " chosen | seconds |" } else { "" };
    let _ = writeln!(md, "| model | method | {} |{extra}", names.join(" | "));
    let rule = if details { "---|---|" } else { "" };
    let _ = writeln!(md, "|---|---|{}{rule}", "---|".repeat(names.len()));
    for e in &task.entries {
        let cells: Vec<String> = names
            .iter()
            .map(|m| e.metrics.get(m).map_or("—".into(), |s| s.to_string()))
            .collect();
        let tail = if details {
            format!(
                " {} | {:.1} |",
                e.chosen.clone().unwrap_or_default(),
                e.seconds
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {}{} | {} | {} |{tail}",
            e.subject,
            if e.baseline { " (baseline)" } else { "" },
            e.method,
            cells.join(" | "),
        );
    }
}

/// The paired comparisons of a task's models with its best baseline, if any.
fn comparisons_table(md: &mut String, task: &TaskResult) {
    let Some(first) = task.comparisons.first() else {
        return;
    };
    let _ = writeln!(
        md,
        "\nAgainst the best baseline ({}), {} difference with its 95% paired bootstrap interval \
         ({} resamples of the test rows, both sides scored on each); a **win** or **loss** only \
         when the interval excludes 0:\n\n| model | method | difference | 95% CI | verdict |\n\
         |---|---|---|---|---|",
        first.baseline, task.headline, first.difference.resamples
    );
    for c in &task.comparisons {
        let verdict = match c.verdict {
            crate::metrics::Verdict::Tie => c.verdict.to_string(),
            v => format!("**{v}**"),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:+.3} | [{:+.3}, {:+.3}] | {verdict} |",
            c.subject, c.method, c.difference.difference, c.difference.ci[0], c.difference.ci[1]
        );
    }
}

/// `relevance.csv`, the relevance table, its correlation with fine-tuning and its heatmap.
fn relevance_section(
    md: &mut String,
    dir: &Path,
    plots: &Path,
    results: &BenchResults,
) -> Result<(), EvalError> {
    let mut csv = String::from("model,task,logme,h_score,knn,linear,finetuned,embed_seconds\n");
    for r in &results.relevance {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.2}",
            r.model,
            r.task,
            r.logme,
            r.h_score.map_or(String::new(), |v| v.to_string()),
            r.knn,
            r.linear,
            r.finetuned.map_or(String::new(), |v| v.to_string()),
            r.embed_seconds
        );
    }
    write_text(&dir.join("relevance.csv"), &csv)?;
    let _ = writeln!(
        md,
        "## Relevance (frozen embeddings only)\n\nLogME evidence per sample and H-score on the \
         training split; kNN and linear probe on test, in the task's headline (kNN: accuracy \
         for classes).\n"
    );
    let _ = writeln!(
        md,
        "| model | task | LogME | H-score | kNN | linear | fine-tuned |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for r in &results.relevance {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.task,
            fmt(r.logme),
            r.h_score.map_or("—".into(), fmt),
            fmt(r.knn),
            fmt(r.linear),
            match r.finetuned {
                None => "—".into(),
                Some(f) if r.finetune_below_probe() =>
                    format!("{} ⚠ below the frozen probe", fmt(f)),
                Some(f) => fmt(f),
            }
        );
    }
    let below = results.finetune_below_probe();
    if !below.is_empty() {
        let _ = writeln!(
            md,
            "\n**Fine-tuning ended below the frozen linear probe** of the same model on: {}. \
             The fine-tuned model is under-trained there (more steps, another learning rate, or \
             a head initialised from the probe); compare baselines with the probe instead.\n",
            below
                .iter()
                .map(|r| format!(
                    "{} / {} ({} vs {})",
                    r.model,
                    r.task,
                    fmt(r.finetuned.unwrap_or(f64::NAN)),
                    fmt(r.linear)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if !results.relevance_correlations.is_empty() {
        relevance_correlation_table(md, &results.relevance_correlations);
    } else if !results.relevance_vs_finetune.is_empty() {
        // Results written before the intervals existed.
        let _ = writeln!(
            md,
            "\nSpearman correlation of each score with the fine-tuned result over (model, task) \
             pairs: {}\n",
            results
                .relevance_vs_finetune
                .iter()
                .map(|(k, v)| format!("{k} {}", fmt(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rows: Vec<String> = results
        .relevance
        .iter()
        .map(|r| format!("{} / {}", r.model, r.task))
        .collect();
    let cols = ["LogME", "H-score", "kNN", "linear MCC"].map(String::from);
    let values: Vec<Vec<f64>> = results
        .relevance
        .iter()
        .map(|r| vec![r.logme, r.h_score.unwrap_or(f64::NAN), r.knn, r.linear])
        .collect();
    heatmap(
        &plots.join("relevance.png"),
        "Relevance of each model to each task (colour scaled per column)",
        &rows,
        &cols,
        &values,
        true,
    )?;
    let _ = writeln!(md, "\n![relevance](plots/relevance.png)\n");
    Ok(())
}

/// One model's task × task affinity table and heatmap.
fn affinity_section(md: &mut String, plots: &Path, a: &Affinity) -> Result<(), EvalError> {
    let _ = writeln!(
        md,
        "## Task affinity — {}\n\nRow: the task whose linear probe is applied; column: the task \
         scored (test MCC of a logistic regression on the row probe's outputs).\n",
        a.model
    );
    let _ = writeln!(md, "| probe from \\ scored on | {} |", a.tasks.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(a.tasks.len()));
    matrix_rows(md, &a.tasks, str::to_string, &a.mcc, fmt);
    let png = format!("affinity_{}.png", safe(&a.model));
    heatmap(
        &plots.join(&png),
        &format!("Task affinity ({})", a.model),
        &a.tasks,
        &a.tasks,
        &a.mcc,
        false,
    )?;
    let _ = writeln!(md, "\n![affinity](plots/{png})\n");
    if a.covariance_similarity.len() == a.tasks.len() && !a.tasks.is_empty() {
        let _ = writeln!(
            md,
            "Covariance similarity (Wu, Zhang & Ré 2020, eq. 5) of the tasks' training \
             embeddings: 1 when both tasks' variance lies along one shared direction, 0 when \
             their kept directions are orthogonal; symmetric, and a task's score with itself is \
             below 1 unless one direction holds all its variance. It sees the sequences, not the \
             labels. Kept directions (99% of the eigenvalue sum): {}.\n",
            a.covariance_ranks
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(md, "| covariance similarity | {} |", a.tasks.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(a.tasks.len()));
        matrix_rows(md, &a.tasks, str::to_string, &a.covariance_similarity, fmt);
        let _ = writeln!(md);
    }
    Ok(())
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
