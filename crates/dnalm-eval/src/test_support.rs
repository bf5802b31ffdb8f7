//! Small synthetic tasks the unit tests of several modules share.

use std::path::{Path, PathBuf};

/// A 64-bit linear congruential generator: reproducible rows without a seeded crate RNG.
pub(crate) struct Lcg(u64);

impl Lcg {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    /// The next draw (the high 31 bits of the state).
    pub(crate) fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

/// Writes a two-class task `dir/name` (labels `at`, `gc`) with 64 train, 32 valid and 32 test
/// rows; `row(i, rng)` gives row `i`'s sequence and label. Returns the task's directory.
pub(crate) fn binary_task(
    dir: &Path,
    name: &str,
    seed: u64,
    mut row: impl FnMut(usize, &mut Lcg) -> (String, usize),
) -> PathBuf {
    let task = dir.join(name);
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(
        task.join("task.json"),
        format!(r#"{{"name": "{name}", "num_classes": 2, "label_names": ["at", "gc"]}}"#),
    )
    .unwrap();
    let mut rng = Lcg::new(seed);
    for (split, n) in [("train", 64), ("valid", 32), ("test", 32)] {
        let mut csv = String::from("sequence,label\n");
        for i in 0..n {
            let (seq, label) = row(i, &mut rng);
            csv.push_str(&format!("{seq},{label}\n"));
        }
        std::fs::write(task.join(format!("{split}.csv")), csv).unwrap();
    }
    task
}
