//! Published numbers for the tasks of standard suites, shown beside a bench's own results.
//!
//! The table is `data/anchors/published.csv` (its provenance is in `data/anchors/README.md`),
//! compiled into the library so that an installed `dnalm` needs no data directory.

use std::sync::OnceLock;

use dnalm_seq::suite::SuiteFormat;
use serde::{Deserialize, Serialize};

/// The published table as shipped.
const PUBLISHED_CSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/anchors/published.csv"
));

/// One published number: a model's metric on a suite's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    /// The suite (its format).
    pub suite: SuiteFormat,
    /// The task's name as dnalm reports it (GUE: `group/task`).
    pub task: String,
    /// The model as the source names it.
    pub model: String,
    /// The metric, as named in dnalm's results (`auroc`, `mcc`).
    pub metric: String,
    /// The value.
    pub value: f64,
    /// How it was obtained (frozen embeddings, fine-tuning...).
    pub protocol: String,
    /// The publication.
    pub source: String,
    /// The table in the publication.
    pub source_table: String,
    /// The task's name in the publication.
    pub source_name: String,
}

/// Every published number dnalm ships (parsed once).
pub fn published() -> &'static [Anchor] {
    static TABLE: OnceLock<Vec<Anchor>> = OnceLock::new();
    TABLE.get_or_init(|| {
        csv::Reader::from_reader(PUBLISHED_CSV.as_bytes())
            .deserialize()
            .filter_map(Result::ok)
            .collect()
    })
}

/// The published numbers for one task of a suite (none for dnalm's own tasks).
pub fn for_task(suite: SuiteFormat, task: &str) -> Vec<&'static Anchor> {
    published()
        .iter()
        .filter(|a| a.suite == suite && a.task == task)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_shipped_table_parses_and_is_a_plausible_metric() {
        let rows = PUBLISHED_CSV.lines().count() - 1;
        assert_eq!(
            published().len(),
            rows,
            "a row of published.csv did not parse"
        );
        assert!(rows >= 100);
        for a in published() {
            assert!(a.suite != SuiteFormat::Dnalm, "{a:?}");
            assert!((0.0..=1.0).contains(&a.value), "{a:?}");
            assert!(matches!(a.metric.as_str(), "auroc" | "mcc"), "{a:?}");
        }
        let prom = for_task(SuiteFormat::Gue, "prom/prom_300_all");
        let models: Vec<&str> = prom.iter().map(|a| a.model.as_str()).collect();
        assert_eq!(
            models,
            ["DNABERT-2", "NT-v2", "HyenaDNA", "Caduceus-Ph", "GROVER"]
        );
        assert_eq!(prom[0].value, 0.9426);
        assert!(for_task(SuiteFormat::Dnalm, "prom/prom_300_all").is_empty());
    }
}
