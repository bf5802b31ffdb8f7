//! Which tasks to train together: `dnalm multitask --plan`.
//!
//! A short joint run (uniform task draw) measures the *inter-task gradient affinity* of Fifty et
//! al. 2021 ("Efficiently Identifying Task Groupings in Multi-Task Learning", TAG) at regular
//! lookaheads: `Z[i][j] = 1 - L_j(θ after a step on task i's batch) / L_j(θ)`, the relative drop
//! of task j's loss that a step on task i alone would give (positive: i helps j). Beside it the
//! plan reports what the relevance machinery says on the frozen encoder: each task's LogME and
//! the task × task probe affinity (how much of task j a probe trained on task i carries) with the
//! covariance similarity of Wu, Zhang & Ré 2020 between the tasks' embeddings (inputs only).
//!
//! Groups are chosen from the gradient affinity, conservatively: an affinity counts by its lower
//! bound `mean - se` over the lookaheads, a task joins a group only when the mean lower bound
//! it receives from its group mates is positive (no task is expected to lose), and among the
//! partitions that satisfy this the one with the largest total is taken (ties: more groups).
//! Partitions are enumerated exhaustively, so at most [`MAX_TASKS`] tasks are grouped.

use serde::{Deserialize, Serialize};

use super::{Multitask, RunSetup, TaskSampling};
use crate::{
    bench::Progress,
    features::Labelled,
    metrics::Summary,
    probes::SplitFeatures,
    relevance::{logme_with, task_affinity_with, Affinity, Gram},
    EvalError,
};

/// The most tasks `--groups auto` partitions (Bell(10) = 115,975 partitions).
pub const MAX_TASKS: usize = 10;

/// Lookaheads a plan run measures (spread evenly over its steps).
pub const LOOKAHEADS: usize = 25;

/// A grouping proposal and the measurements it rests on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Task names (the matrices' order).
    pub tasks: Vec<String>,
    /// Steps of the joint run.
    pub steps: usize,
    /// Lookaheads measured.
    pub lookaheads: usize,
    /// `[i][j]`: mean inter-task gradient affinity of task i onto task j.
    pub gradient_affinity: Vec<Vec<f64>>,
    /// Its standard error over the lookaheads.
    pub gradient_affinity_se: Vec<Vec<f64>>,
    /// LogME of each task's training rows on the frozen encoder's pooled embeddings.
    pub logme: Vec<f64>,
    /// Task × task probe affinity and covariance similarity on the frozen embeddings.
    pub probe_affinity: Affinity,
    /// The proposed groups (task names).
    pub groups: Vec<Vec<String>>,
    /// The same groups as indices into `tasks`.
    pub group_indices: Vec<Vec<usize>>,
}

impl Multitask<'_> {
    /// Measures the plan with a joint run of `steps` steps over every task.
    pub fn plan(&self, steps: usize, progress: &mut dyn Progress) -> Result<Plan, EvalError> {
        let data = &self.data;
        let n = data.tasks.len();
        let steps = steps.max(1);
        progress.message(&format!(
            "plan: a joint run of {steps} steps over {n} tasks, {LOOKAHEADS} lookaheads"
        ));
        let setup = RunSetup {
            group: (0..n).collect(),
            seed: self.options.finetune.fit.seed,
            sampling: TaskSampling::Uniform,
            steps: Some(steps),
            lookahead_every: Some(steps.div_ceil(LOOKAHEADS).max(1)),
            keep: false,
            validate: false,
        };
        let run = super::train_group(data, &self.options.finetune, &setup)?;
        let (mut mean, mut se) = (vec![vec![0.0; n]; n], vec![vec![0.0; n]; n]);
        for i in 0..n {
            for j in 0..n {
                let values: Vec<f64> = run.lookaheads.iter().map(|z| z[i][j]).collect();
                let s = Summary::of(&values);
                mean[i][j] = s.mean;
                se[i][j] = s.sd / (s.n.max(1) as f64).sqrt();
            }
        }
        let mut logmes = Vec::with_capacity(n);
        let mut train_grams = Vec::with_capacity(n);
        let mut features = Vec::with_capacity(n);
        for t in &data.tasks {
            let labelled = |idx: &[usize]| Labelled {
                x: t.pooled.select(ndarray::Axis(0), idx),
                y: t.y.select(idx),
            };
            let train = labelled(&t.train);
            let gram = Gram::of(train.x.view());
            logmes.push(logme_with(train.x.view(), &gram, &train.y)?);
            train_grams.push(gram);
            features.push((
                t.name().to_string(),
                SplitFeatures {
                    train,
                    valid: labelled(&t.valid),
                    test: labelled(&t.test),
                },
            ));
        }
        let probe_affinity = task_affinity_with(&data.model.name, &features, &train_grams)?;
        let group_indices = if n <= MAX_TASKS {
            propose_groups(&mean, &se)
        } else {
            (0..n).map(|t| vec![t]).collect()
        };
        let names: Vec<String> = data.tasks.iter().map(|t| t.name().to_string()).collect();
        Ok(Plan {
            groups: group_indices
                .iter()
                .map(|g| g.iter().map(|&t| names[t].clone()).collect())
                .collect(),
            tasks: names,
            steps: run.steps,
            lookaheads: run.lookaheads.len(),
            gradient_affinity: mean,
            gradient_affinity_se: se,
            logme: logmes,
            probe_affinity,
            group_indices,
        })
    }
}

/// The partition of tasks with the largest total affinity under the rule of the module notes,
/// from mean affinities `mean[i][j]` (i onto j) and their standard errors.
pub fn propose_groups(mean: &[Vec<f64>], se: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = mean.len();
    let lower = |i: usize, j: usize| mean[i][j] - se[i][j];
    // Every partition as a restricted growth string: a[0] = 0, a[i] <= 1 + max(a[..i]).
    let mut a = vec![0usize; n];
    let mut best: Option<(f64, usize, Vec<usize>)> = None;
    loop {
        let groups = 1 + a.iter().copied().max().unwrap_or(0);
        let mut score = 0.0;
        let mut valid = true;
        for j in 0..n {
            let mates: Vec<usize> = (0..n).filter(|&i| i != j && a[i] == a[j]).collect();
            if mates.is_empty() {
                continue;
            }
            let received = mates.iter().map(|&i| lower(i, j)).sum::<f64>() / mates.len() as f64;
            if !(received.is_finite() && received > 0.0) {
                valid = false;
                break;
            }
            score += received;
        }
        if valid
            && best
                .as_ref()
                .is_none_or(|b| score > b.0 || (score == b.0 && groups > b.1))
        {
            best = Some((score, groups, a.clone()));
        }
        // The next restricted growth string.
        let mut i = n;
        loop {
            if i <= 1 {
                let assignment = best.map(|b| b.2).unwrap_or_else(|| (0..n).collect());
                return groups_of(&assignment);
            }
            i -= 1;
            let prefix_max = a[..i].iter().copied().max().unwrap_or(0);
            if a[i] <= prefix_max {
                a[i] += 1;
                a[i + 1..].iter_mut().for_each(|v| *v = 0);
                break;
            }
        }
    }
}

/// Groups of an assignment (group of each task), in order of their first task.
fn groups_of(assignment: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index = std::collections::BTreeMap::new();
    for (t, &g) in assignment.iter().enumerate() {
        let k = *index.entry(g).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[k].push(t);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn related_tasks_are_grouped_and_a_task_that_would_lose_is_kept_apart() {
        // 0 and 1 help each other; 2 helps nobody and 0 and 1 do not help it.
        let mean = vec![
            vec![0.3, 0.2, -0.01],
            vec![0.15, 0.3, 0.0],
            vec![-0.05, -0.02, 0.2],
        ];
        let se = vec![vec![0.01; 3]; 3];
        assert_eq!(propose_groups(&mean, &se), vec![vec![0, 1], vec![2]]);
        // An affinity within one standard error of zero does not merge.
        let noisy = vec![vec![0.2; 3]; 3];
        assert_eq!(
            propose_groups(&mean, &noisy),
            vec![vec![0], vec![1], vec![2]]
        );
        // One-sided help is not enough: 1 would receive a negative affinity from 0.
        let one_sided = vec![vec![0.3, -0.2, 0.0], vec![0.2, 0.3, 0.0], vec![0.0; 3]];
        assert_eq!(
            propose_groups(&one_sided, &vec![vec![0.0; 3]; 3]),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn every_partition_is_considered() {
        // Four tasks in two related pairs, interleaved: {0, 2} and {1, 3}.
        let mut mean = vec![vec![-0.1; 4]; 4];
        for (i, j) in [(0, 2), (2, 0), (1, 3), (3, 1)] {
            mean[i][j] = 0.2;
        }
        let se = vec![vec![0.0; 4]; 4];
        assert_eq!(propose_groups(&mean, &se), vec![vec![0, 2], vec![1, 3]]);
        // All four related: one group.
        let all = vec![vec![0.1; 4]; 4];
        assert_eq!(propose_groups(&all, &se), vec![vec![0, 1, 2, 3]]);
    }
}
