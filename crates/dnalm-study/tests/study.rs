//! Study files (the grid, refusals) and a study's analysis and report from made-up results:
//! easy, hard and knob-sensitive tasks.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;

use dnalm_eval::metrics::{Summary, TestPredictions};
use dnalm_study::{
    analyse, write_study_report, CellResult, StudyResults, StudySpec, TaskClass, TaskScore,
};

fn spec(text: &str) -> Result<StudySpec, dnalm_study::StudyError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.toml");
    std::fs::write(&p, text).unwrap();
    StudySpec::load(&p)
}

const GRID: &str = r#"
name = "g"
base = "run.toml"
tasks = ["t"]
seeds = [1, 2]
[budget]
tokens = 1000
[[knobs]]
name = "context"
key = "data.context"
values = [128, 512]
[[knobs]]
name = "objective"
values = [{ label = "mlm", set = ["objectives=[{type=\"mlm\"}]"] }, { label = "next token", set = ["model.architecture=\"decoder\"", "objectives=[{type=\"next_token\"}]"] }]
"#;

fn result(cell: &str, seed: u64, task_scores: &[(&str, f64)]) -> CellResult {
    CellResult {
        cell: cell.into(),
        seed,
        differs: vec![],
        steps: 1,
        tokens: 1,
        bases: 1,
        parameters: 1,
        train_seconds: 0.0,
        valid_loss: None,
        valid_accuracy: None,
        checkpoint: PathBuf::new(),
        eval_seconds: 0.0,
        scores: task_scores
            .iter()
            .map(|(t, v)| TaskScore {
                task: t.to_string(),
                metric: "mcc".into(),
                linear: Summary {
                    mean: *v,
                    sd: 0.01,
                    n: 3,
                },
                logme: 0.0,
                knn: 0.0,
                finetuned: None,
                linear_predictions: None,
            })
            .collect(),
        random: vec![],
    }
}

#[test]
fn analysis_separates_easy_hard_and_knob_sensitive() {
    let s = spec(GRID).unwrap();
    let cells = s.cells();
    let mut results = Vec::new();
    for c in &cells {
        let long = c.value("context") == Some("512");
        for seed in [1u64, 2] {
            let jitter = seed as f64 * 0.002;
            results.push(result(
                &c.id,
                seed,
                &[
                    ("easy", 0.93 + jitter),
                    ("hard", 0.30 + jitter),
                    ("long", if long { 0.6 } else { 0.05 } + jitter),
                ],
            ));
        }
    }
    // One fine-tuned score below its cell's frozen probe (easy: 0.93): the report flags it.
    results[0].scores[0].finetuned = Some(Summary {
        mean: 0.5,
        sd: 0.0,
        n: 1,
    });
    let a = analyse(&s, &cells, &results, &[]);
    let class = |t: &str| a.iter().find(|x| x.task == t).unwrap().class.clone();
    assert_eq!(class("easy"), TaskClass::Easy);
    assert_eq!(class("hard"), TaskClass::Hard);
    assert_eq!(
        class("long"),
        TaskClass::KnobSensitive(vec!["context".into()])
    );
    let long = a.iter().find(|x| x.task == "long").unwrap();
    let ctx = &long.effects[0];
    assert_eq!(ctx.best, "512");
    assert!((ctx.effect - 0.55).abs() < 1e-9, "{}", ctx.effect);
    assert!(ctx.error < 0.01);
    // The report renders from these.
    let dir = tempfile::tempdir().unwrap();
    let study = StudyResults {
        spec: s,
        cells,
        results,
        baselines: vec![],
        analysis: a,
        complete: true,
    };
    let md = std::fs::read_to_string(write_study_report(dir.path(), &study).unwrap()).unwrap();
    assert!(md.contains("knob-sensitive: context"), "{md}");
    assert!(
        md.contains("0.500 ± 0.000 ⚠ below the frozen probe (0.93"),
        "{md}"
    );
    assert!(dir.path().join("plots/heatmap.png").exists());
    assert!(dir.path().join("plots/effect_context.png").exists());
    assert!(dir.path().join("plots/effect_objective.png").exists());
}

/// Predictions on 40 alternating-label test rows, wrong on rows `0..wrong`.
fn predictions(wrong: usize) -> TestPredictions {
    let truth: Vec<u32> = (0..40).map(|i| i % 2).collect();
    let run = truth
        .iter()
        .enumerate()
        .map(|(i, &t)| if i < wrong { 1 - t } else { t })
        .collect();
    TestPredictions::Classes {
        truth,
        num_classes: 2,
        runs: vec![run],
    }
}

#[test]
fn a_knob_matters_only_when_its_paired_interval_excludes_zero() {
    let s = spec(GRID).unwrap();
    let cells = s.cells();
    let mut results = Vec::new();
    for c in &cells {
        let long = c.value("context") == Some("512");
        for seed in [1u64, 2] {
            let mut r = result(
                &c.id,
                seed,
                &[
                    ("clear", if long { 0.9 } else { 0.3 }),
                    ("noisy", if long { 0.6 } else { 0.5 }),
                ],
            );
            // "clear": the long context is right on 38 rows, the short one on 14.
            r.scores[0].linear_predictions = Some(predictions(if long { 2 } else { 26 }));
            // "noisy": the scores differ beyond seed noise, but on two test rows only.
            r.scores[1].linear_predictions = Some(predictions(if long { 5 } else { 7 }));
            results.push(r);
        }
    }
    let a = analyse(&s, &cells, &results, &[]);
    let effect = |t: &str| a.iter().find(|x| x.task == t).unwrap().effects[0].clone();
    let clear = effect("clear");
    assert!(clear.sensitive, "{clear:?}");
    assert!(clear.paired.unwrap().ci[0] > 0.0);
    let noisy = effect("noisy");
    assert!(
        noisy.effect > 2.0 * noisy.error,
        "seed noise alone would call it"
    );
    let paired = noisy.paired.unwrap();
    assert!(paired.ci[0] <= 0.0, "{paired:?}");
    assert!(!noisy.sensitive, "{noisy:?}");
}

#[test]
fn grid_is_every_combination() {
    let s = spec(GRID).unwrap();
    let cells = s.cells();
    assert_eq!(cells.len(), 4);
    assert_eq!(cells[0].id, "context-128_objective-mlm");
    assert_eq!(cells[3].id, "context-512_objective-next-token");
    assert_eq!(cells[3].label(), "context=512, objective=next token");
    assert_eq!(
        cells[3].set,
        vec![
            "data.context=512".to_string(),
            "model.architecture=\"decoder\"".into(),
            "objectives=[{type=\"next_token\"}]".into()
        ]
    );
    assert!(s.base.is_absolute() || s.base.ends_with("run.toml"));
}

#[test]
fn bad_studies_are_refused_with_a_reason() {
    let cases = [
        (
            GRID.replace("tokens = 1000", "tokens = 1000\nseconds = 5"),
            "exactly one",
        ),
        (
            GRID.replace("key = \"data.context\"\n", ""),
            "plain values need key",
        ),
        (GRID.replace("label = \"mlm\", ", ""), "needs label"),
        (
            GRID.replace("seeds = [1, 2]", "seeds = []"),
            "seeds is empty",
        ),
        (
            GRID.replace("name = \"g\"", "name = \"g\"\nbogus = 1"),
            "unknown field",
        ),
    ];
    for (text, want) in cases {
        let e = spec(&text).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains(want), "{want}: {e}");
    }
}

/// A study over the shipped `configs/mlm.toml`, with one knob over `--set` lists.
fn shipped_study(dir: &std::path::Path, values: &str) -> StudySpec {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = format!(
        r#"
name = "memory"
base = "{}"
tasks = ["t"]
seeds = [1]
[budget]
bases = 1000
[[knobs]]
name = "recompute"
values = [{values}]
"#,
        root.join("configs/mlm.toml").display()
    );
    let p = dir.join("s.toml");
    std::fs::write(&p, text).unwrap();
    StudySpec::load(&p).unwrap()
}

#[test]
fn a_study_knows_whether_a_cell_checkpoints_activations() {
    let dir = tempfile::tempdir().unwrap();
    let plain = r#"{ label = "plain", set = ["train.steps=1"] }"#;
    let recomputed = r#"{ label = "recomputed", set = ["train.activation_checkpointing=true"] }"#;
    let none = shipped_study(dir.path(), plain);
    assert!(!none.checkpoints_activations().unwrap());
    let one = shipped_study(dir.path(), &format!("{plain}, {recomputed}"));
    assert!(one.checkpoints_activations().unwrap());
}
