//! The study's report: `study.json`, `study.md` and `plots/` (a heatmap of cells × tasks and one
//! effect plot per knob), each file written atomically.

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
};

use dnalm_eval::{
    metrics::Summary,
    report::plot::{heatmap, lines, Series},
};

use crate::{
    analysis::{CellResult, StudyResults, TaskAnalysis, TaskScore},
    run::json,
    StudyError,
};

/// Writes `text` to `path` atomically (temp file + rename).
pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), StudyError> {
    Ok(dnalm_seq::write_atomic(path, |w| {
        w.write_all(text.as_bytes())
    })?)
}

/// Writes `study.json`, `study.md` and `plots/` (heatmap of cells × tasks, one effect plot per
/// knob); returns the path of `study.md`.
pub fn write_study_report(out: &Path, study: &StudyResults) -> Result<PathBuf, StudyError> {
    write_text(&out.join("study.json"), &json(study)?)?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| StudyError::io(&plots, e))?;
    let view = View::new(study);
    view.write_heatmap(&plots)?;
    let effect_plots = view.write_effect_plots(&plots)?;
    let mut md = String::new();
    view.introduction(&mut md);
    view.cells_table(&mut md);
    view.scores_table(&mut md);
    view.finetuned_table(&mut md);
    let _ = writeln!(md, "\n![heatmap](plots/heatmap.png)\n");
    view.classes_table(&mut md);
    view.effects_table(&mut md);
    for (knob, file) in &effect_plots {
        let _ = writeln!(md, "\n![{knob}](plots/{file})");
    }
    view.logme_table(&mut md);
    let path = out.join("study.md");
    write_text(&path, &md)?;
    Ok(path)
}

/// The study's numbers as the report shows them.
struct View<'a> {
    study: &'a StudyResults,
    tasks: Vec<&'a TaskAnalysis>,
    has_random: bool,
}

impl<'a> View<'a> {
    fn new(study: &'a StudyResults) -> Self {
        View {
            study,
            tasks: study.analysis.iter().collect(),
            has_random: study.results.iter().any(|r| !r.random.is_empty()),
        }
    }

    fn results_of(&self, cell: &'a str) -> impl Iterator<Item = &'a CellResult> + 'a {
        self.study.results.iter().filter(move |r| r.cell == cell)
    }

    /// One value per seed of a cell's score on a task, as `pick` reads it.
    fn per_seed(
        &self,
        cell: &str,
        task: &str,
        pick: impl Fn(&TaskScore) -> Option<f64>,
    ) -> Vec<f64> {
        self.study
            .results
            .iter()
            .filter(|r| r.cell == cell)
            .flat_map(|r| r.scores.iter())
            .filter(|s| s.task == task)
            .filter_map(pick)
            .collect()
    }

    /// A cell's linear-probe score on a task: mean and sd over seeds, and the seed count.
    fn cell_score(&self, cell: &str, task: &str) -> (f64, f64, usize) {
        let s = Summary::of(&self.per_seed(cell, task, |s| Some(s.linear.mean)));
        (s.mean, s.sd, s.n)
    }

    fn baseline_score(&self, subject: &str, task: &str) -> f64 {
        self.study
            .baselines
            .iter()
            .find(|t| t.task == task)
            .and_then(|t| {
                t.entries
                    .iter()
                    .find(|e| e.subject == subject)
                    .and_then(|e| e.metrics.get(&t.headline).map(|m| m.mean))
            })
            .unwrap_or(f64::NAN)
    }

    fn random_score(&self, cell: &str, task: &str) -> f64 {
        self.study
            .results
            .iter()
            .filter(|r| r.cell == cell)
            .flat_map(|r| r.random.iter())
            .find(|s| s.task == task)
            .map(|s| s.linear.mean)
            .unwrap_or(f64::NAN)
    }

    /// `| cell-a | cell-b |` header cells and their rule.
    fn cell_columns(&self) -> (String, String) {
        let ids: Vec<&str> = self.study.cells.iter().map(|c| c.id.as_str()).collect();
        (ids.join(" | "), "---|".repeat(ids.len()))
    }

    /// Heatmap: tasks × cells (+ random controls, + baselines).
    fn write_heatmap(&self, plots: &Path) -> Result<(), StudyError> {
        let study = self.study;
        let mut columns: Vec<String> = study.cells.iter().map(|c| c.id.clone()).collect();
        let mut values: Vec<Vec<f64>> = self
            .tasks
            .iter()
            .map(|t| {
                study
                    .cells
                    .iter()
                    .map(|c| self.cell_score(&c.id, &t.task).0)
                    .collect()
            })
            .collect();
        if self.has_random {
            for c in &study.cells {
                columns.push(format!("random({})", c.id));
                for (i, t) in self.tasks.iter().enumerate() {
                    values[i].push(self.random_score(&c.id, &t.task));
                }
            }
        }
        if !study.baselines.is_empty() {
            for b in ["kmer-spectrum", "onehot-cnn"] {
                columns.push(b.into());
                for (i, t) in self.tasks.iter().enumerate() {
                    values[i].push(self.baseline_score(b, &t.task));
                }
            }
        }
        let rows: Vec<String> = self.tasks.iter().map(|t| t.task.clone()).collect();
        if !rows.is_empty() {
            heatmap(
                &plots.join("heatmap.png"),
                &format!(
                    "{}: linear-probe score (test), mean over seeds",
                    study.spec.name
                ),
                &rows,
                &columns,
                &values,
                false,
            )?;
        }
        Ok(())
    }

    /// One plot per knob with several values: each task's score against the knob's values.
    /// Returns (knob, file name) of each plot written.
    fn write_effect_plots(&self, plots: &Path) -> Result<Vec<(String, String)>, StudyError> {
        let spec = &self.study.spec;
        let mut written = Vec::new();
        for knob in spec.knobs.iter().filter(|k| k.values.len() > 1) {
            let series: Vec<Series> = self
                .tasks
                .iter()
                .filter_map(|t| {
                    t.effects
                        .iter()
                        .find(|e| e.knob == knob.name)
                        .map(|e| Series {
                            name: t.task.clone(),
                            points: e
                                .means
                                .iter()
                                .copied()
                                .zip(e.errors.iter().copied())
                                .collect(),
                        })
                })
                .collect();
            let Some(first) = self
                .tasks
                .first()
                .and_then(|t| t.effects.iter().find(|e| e.knob == knob.name))
            else {
                continue;
            };
            let file = format!("effect_{}.png", sanitize(&knob.name));
            lines(
                &plots.join(&file),
                &format!(
                    "{}: score against {} (± s.e. over seeds)",
                    spec.name, knob.name
                ),
                &knob.name,
                "linear-probe score",
                &first.values,
                &series,
            )?;
            written.push((knob.name.clone(), file));
        }
        Ok(written)
    }

    fn introduction(&self, md: &mut String) {
        let (study, spec) = (self.study, &self.study.spec);
        let _ = writeln!(md, "# Study: {}\n", spec.name);
        if !spec.description.is_empty() {
            let _ = writeln!(md, "{}\n", spec.description.trim());
        }
        let budget = match (spec.budget.tokens, spec.budget.bases, spec.budget.seconds) {
            (Some(t), _, _) => format!("{t} training tokens"),
            (_, Some(b), _) => format!("{b} training bases"),
            (_, _, Some(s)) => format!("{s} s of training"),
            _ => "?".into(),
        };
        let _ = writeln!(
            md,
            "Base config `{}`; every cell pretrained with the same budget ({budget}) for each of {} seed(s) ({:?}); {} cell(s); scored by a linear probe on frozen, mean-pooled final-layer embeddings (test split; the probe fitted on all training rows, then mean over seeds ± sd over seeds, or ± the sd of the probe's {} fold refits where there is one seed).{}\n",
            spec.base.display(),
            spec.seeds.len(),
            spec.seeds,
            study.cells.len(),
            spec.eval.folds.max(2),
            if study.complete { "" } else { " **Incomplete: run the same command again to resume.**" }
        );
    }

    fn cells_table(&self, md: &mut String) {
        let study = self.study;
        let _ = writeln!(md, "## Cells\n");
        let _ = writeln!(
            md,
            "| cell | differs from the study's base (base config + common `set`) in | params | steps | tokens | bases | train s | valid loss | valid acc |\n|---|---|---|---|---|---|---|---|---|"
        );
        // Settings every cell shares are not what the knobs change.
        let first_differs: Vec<&Vec<String>> = study
            .cells
            .iter()
            .filter_map(|c| self.results_of(&c.id).next().map(|r| &r.differs))
            .collect();
        let shared =
            |d: &String| first_differs.len() > 1 && first_differs.iter().all(|x| x.contains(d));
        for c in &study.cells {
            let rs: Vec<&CellResult> = self.results_of(&c.id).collect();
            let Some(r) = rs.first() else {
                let _ = writeln!(md, "| {} | (not run yet) | | | | | | | |", c.id);
                continue;
            };
            let mean = |f: &dyn Fn(&CellResult) -> f64| {
                Summary::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).mean
            };
            let own: Vec<&str> = r
                .differs
                .iter()
                .filter(|d| !shared(d))
                .map(String::as_str)
                .collect();
            let own = if own.is_empty() {
                "—".to_string()
            } else {
                own.join("; ").replace('|', "\\|")
            };
            let _ = writeln!(
                md,
                "| {} | {own} | {:.2} M | {} | {:.2} M | {:.2} M | {:.0} | {:.4} | {:.4} |",
                c.id,
                r.parameters as f64 / 1e6,
                r.steps,
                mean(&|r| r.tokens as f64) / 1e6,
                mean(&|r| r.bases as f64) / 1e6,
                mean(&|r| r.train_seconds),
                mean(&|r| r.valid_loss.unwrap_or(f64::NAN)),
                mean(&|r| r.valid_accuracy.unwrap_or(f64::NAN)),
            );
        }
    }

    fn scores_table(&self, md: &mut String) {
        let study = self.study;
        let _ = writeln!(md, "\n## Scores (linear probe, test split)\n");
        let mut header = String::from("| task | metric |");
        let mut rule = String::from("|---|---|");
        for c in &study.cells {
            let _ = write!(header, " {} |", c.id);
            rule.push_str("---|");
        }
        if self.has_random {
            header.push_str(" random init (mean over cells) |");
            rule.push_str("---|");
        }
        if !study.baselines.is_empty() {
            header.push_str(" k-mer spectrum | one-hot CNN |");
            rule.push_str("---|---|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for t in &self.tasks {
            let mut line = format!("| {} | {} |", t.task, t.metric);
            for c in &study.cells {
                let (m, sd, n) = self.cell_score(&c.id, &t.task);
                if n == 0 || !m.is_finite() {
                    line.push_str(" — |");
                } else if n > 1 {
                    let _ = write!(line, " {m:.3} ± {sd:.3} |");
                } else {
                    let refit = self
                        .results_of(&c.id)
                        .next()
                        .and_then(|r| r.linear(&t.task))
                        .map_or(f64::NAN, |(_, sd)| sd);
                    let _ = write!(line, " {m:.3} (± {refit:.3}) |");
                }
            }
            if self.has_random {
                let _ = write!(line, " {:.3} |", t.random_control.unwrap_or(f64::NAN));
            }
            if !study.baselines.is_empty() {
                let _ = write!(
                    line,
                    " {:.3} | {:.3} |",
                    self.baseline_score("kmer-spectrum", &t.task),
                    self.baseline_score("onehot-cnn", &t.task)
                );
            }
            let _ = writeln!(md, "{line}");
        }
    }

    fn finetuned_table(&self, md: &mut String) {
        let study = self.study;
        let any = study
            .results
            .iter()
            .any(|r| r.scores.iter().any(|s| s.finetuned.is_some()));
        if !any {
            return;
        }
        let _ = writeln!(
            md,
            "\n### Fine-tuned (test, mean ± sd over seeds; ⚠ where it ends below the same \
             cell's frozen linear probe: under-trained)\n"
        );
        let (columns, rule) = self.cell_columns();
        let _ = writeln!(md, "| task | {columns} |\n|---|{rule}");
        for t in &self.tasks {
            let vals: Vec<String> = study
                .cells
                .iter()
                .map(|c| {
                    let v = self.per_seed(&c.id, &t.task, |s| s.finetuned.as_ref().map(|f| f.mean));
                    if v.is_empty() {
                        return "—".into();
                    }
                    let s = Summary::of(&v);
                    let probe = self.cell_score(&c.id, &t.task).0;
                    if probe.is_finite() && s.mean < probe {
                        format!(
                            "{:.3} ± {:.3} ⚠ below the frozen probe ({probe:.3})",
                            s.mean, s.sd
                        )
                    } else {
                        format!("{:.3} ± {:.3}", s.mean, s.sd)
                    }
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", t.task, vals.join(" | "));
        }
    }

    fn classes_table(&self, md: &mut String) {
        let eval = &self.study.spec.eval;
        let _ = writeln!(md, "## Easy, hard or knob-sensitive\n");
        let _ = writeln!(
            md,
            "A knob matters for a task when the spread of its values' mean scores (over seeds and the other knobs) exceeds twice its standard error and {:.2}, and the 95% paired bootstrap interval of that difference over the test rows (best value's cells against the worst's, as `bench` decides a win) excludes 0; a task no knob moves is *easy* if every cell scores ≥ {:.2}, else *hard*.\n",
            eval.min_effect, eval.easy_score
        );
        let _ = writeln!(md, "| task | class | best cell | worst cell | best baseline | random init |\n|---|---|---|---|---|---|");
        for t in &self.tasks {
            let _ = writeln!(
                md,
                "| {} | **{}** | {} ({:.3}) | {} ({:.3}) | {} | {} |",
                t.task,
                t.class,
                t.best.0,
                t.best.1,
                t.worst.0,
                t.worst.1,
                t.best_baseline
                    .as_ref()
                    .map(|(n, v)| format!("{n} ({v:.3})"))
                    .unwrap_or_else(|| "—".into()),
                t.random_control
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "—".into()),
            );
        }
    }

    fn effects_table(&self, md: &mut String) {
        let _ = writeln!(md, "\n### Evidence: knob effects\n");
        let _ = writeln!(md, "| task | knob | mean score per value (± s.e.) | effect (max − min) ± s.e. | paired 95% CI | matters |\n|---|---|---|---|---|---|");
        for t in &self.tasks {
            for e in &t.effects {
                let per: Vec<String> = e
                    .values
                    .iter()
                    .zip(e.means.iter().zip(&e.errors))
                    .map(|(v, (m, s))| format!("{v}: {m:.3} ± {s:.3}"))
                    .collect();
                let matters = if e.sensitive {
                    format!("yes (best: {})", e.best)
                } else {
                    "no".into()
                };
                let paired = e.paired.map_or("—".into(), |p| {
                    format!("[{:+.3}, {:+.3}]", p.ci[0], p.ci[1])
                });
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.3} ± {:.3} | {paired} | {matters} |",
                    t.task,
                    e.knob,
                    per.join("; "),
                    e.effect,
                    e.error,
                );
            }
        }
    }

    fn logme_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\n## LogME (train split; higher = embeddings explain the labels better)\n"
        );
        let (columns, rule) = self.cell_columns();
        let _ = writeln!(md, "| task | {columns} |\n|---|{rule}");
        for t in &self.tasks {
            let vals: Vec<String> = self
                .study
                .cells
                .iter()
                .map(|c| {
                    let v = self.per_seed(&c.id, &t.task, |s| Some(s.logme));
                    format!("{:.3}", Summary::of(&v).mean)
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", t.task, vals.join(" | "));
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
