//! Transcription-factor motifs (JASPAR position frequency matrices) and a synthetic task built
//! from them whose label depends on two elements far apart.
//!
//! JASPAR's plain format is hand-parsed: it is four bracketed rows per matrix, and no maintained
//! Rust crate reads it.
//!
//! The long-range task ([`orientation_task`]) implants two sites of one motif in real background
//! sequence, one near each end of a window. The label is whether they are *convergent*
//! (`-->  ...  <--`, the arrangement of CTCF sites that anchor chromatin loops) or not
//! (divergent `<-- ... -->`, or tandem). Convergent and divergent windows hold the same motif
//! words in the same numbers, so no bag-of-k-mers model and nothing that sees only one end can
//! tell them apart: the label needs the order of the two sites, which only a context spanning
//! both shows.

use std::path::Path;

use rand::Rng;
use serde::Serialize;

use crate::{
    alphabet::reverse_complement, error::Result, window::GenomeSplit, Genome, Location, SeqError,
    Split,
};

/// A position frequency matrix: per position, the weights of A, C, G, T.
#[derive(Debug, Clone, PartialEq)]
pub struct Pfm {
    /// JASPAR matrix id (`MA0139.1`).
    pub id: String,
    /// Factor name (`CTCF`).
    pub name: String,
    /// Per position, probabilities of A, C, G, T (each row sums to 1).
    pub probabilities: Vec<[f64; 4]>,
}

impl Pfm {
    /// Motif length in bases.
    pub fn len(&self) -> usize {
        self.probabilities.len()
    }

    /// Whether the motif has no positions (never true for a parsed motif).
    pub fn is_empty(&self) -> bool {
        self.probabilities.is_empty()
    }

    /// Draws one site: a base per position from that position's probabilities.
    pub fn sample(&self, rng: &mut impl Rng) -> Vec<u8> {
        self.probabilities
            .iter()
            .map(|p| {
                let mut u: f64 = rng.random();
                for (base, &w) in b"ACGT".iter().zip(p) {
                    if u < w {
                        return *base;
                    }
                    u -= w;
                }
                b'T'
            })
            .collect()
    }

    /// The most likely base at each position.
    pub fn consensus(&self) -> Vec<u8> {
        self.probabilities
            .iter()
            .map(|p| {
                let best = (0..4).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                b"ACGT"[best]
            })
            .collect()
    }
}

/// Reads every matrix of a JASPAR-format file (`>ID NAME` then rows `A [ n n ... ]` for A, C, G,
/// T). Counts are normalised per position.
pub fn read_jaspar(path: &Path) -> Result<Vec<Pfm>> {
    let text = std::fs::read_to_string(path).map_err(|source| SeqError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_jaspar(&text, path)
}

fn parse_jaspar(text: &str, path: &Path) -> Result<Vec<Pfm>> {
    let err = |line: usize, message: String| SeqError::Format {
        path: path.to_path_buf(),
        at: Location::Line(line as u64),
        message,
    };
    let mut motifs = Vec::new();
    let mut header: Option<(usize, String, String)> = None;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut finish =
        |header: &mut Option<(usize, String, String)>, rows: &mut Vec<Vec<f64>>| -> Result<()> {
            if let Some((line, id, name)) = header.take() {
                if rows.len() != 4 {
                    return Err(err(
                        line,
                        format!("motif '{id}' has {} rows; expected A, C, G, T", rows.len()),
                    ));
                }
                let width = rows[0].len();
                if width == 0 || rows.iter().any(|r| r.len() != width) {
                    return Err(err(line, format!("motif '{id}': rows differ in length")));
                }
                let mut probabilities = Vec::with_capacity(width);
                let columns = rows[0]
                    .iter()
                    .zip(&rows[1])
                    .zip(rows[2].iter().zip(&rows[3]));
                for (i, ((a, c), (g, t))) in columns.enumerate() {
                    let col = [*a, *c, *g, *t];
                    let sum: f64 = col.iter().sum();
                    if sum <= 0.0 {
                        return Err(err(
                            line,
                            format!("motif '{id}': position {} has no counts", i + 1),
                        ));
                    }
                    probabilities.push(col.map(|c| c / sum));
                }
                motifs.push(Pfm {
                    id,
                    name,
                    probabilities,
                });
            }
            rows.clear();
            Ok(())
        };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('>') {
            finish(&mut header, &mut rows)?;
            let mut parts = rest.split_whitespace();
            let id = parts.next().unwrap_or_default().to_string();
            if id.is_empty() {
                return Err(err(n, "motif header without an id".into()));
            }
            let name = parts.collect::<Vec<_>>().join(" ");
            header = Some((n, id, name));
            continue;
        }
        if header.is_none() {
            return Err(err(n, "matrix row before any '>ID NAME' header".into()));
        }
        let expected = ["A", "C", "G", "T"].get(rows.len()).copied();
        let body = expected
            .and_then(|letter| line.strip_prefix(letter))
            .ok_or_else(|| {
                err(
                    n,
                    format!(
                        "expected the {} row, found '{}'",
                        expected.unwrap_or("next motif's header"),
                        line.chars().take(20).collect::<String>()
                    ),
                )
            })?;
        let body = body.trim().trim_start_matches('[').trim_end_matches(']');
        let values = body
            .split_whitespace()
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| err(n, format!("'{v}' is not a non-negative count")))
            })
            .collect::<Result<Vec<f64>>>()?;
        rows.push(values);
    }
    finish(&mut header, &mut rows)?;
    if motifs.is_empty() {
        return Err(SeqError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(motifs)
}

/// The arrangement of the two sites in an [`orientation_task`] window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Arrangement {
    /// `--> ... <--` (label 1).
    Convergent,
    /// `<-- ... -->`.
    Divergent,
    /// `--> ... -->`.
    TandemForward,
    /// `<-- ... <--`.
    TandemReverse,
}

/// Settings of [`orientation_task`].
#[derive(Debug, Clone, Serialize)]
pub struct OrientationTaskSpec {
    /// Window length in bases.
    pub length: usize,
    /// Windows per split (train, valid, test); half are convergent.
    pub rows: [usize; 3],
    /// Each site's start is drawn uniformly within this many bases of its end of the window
    /// (after a margin of `length / 20`).
    pub jitter: usize,
}

/// One window of the task.
#[derive(Debug, Clone, Serialize)]
pub struct OrientationExample {
    /// The bases (uppercase ACGT).
    pub sequence: Vec<u8>,
    /// 1 when convergent.
    pub label: u8,
    /// How the sites are arranged.
    pub arrangement: Arrangement,
    /// Background origin: record name, start (0-based).
    pub origin: (String, usize),
    /// Start of the left and right sites in the window.
    pub sites: (usize, usize),
}

/// Builds the long-range task: windows of real background from each split's genome segments
/// (so background never crosses splits), two sites of `pfm` implanted near the ends, label 1 when
/// convergent. Negatives are divergent half of the time and tandem (either strand) otherwise, so
/// the count of forward and reverse sites carries no signal either. Background windows holding
/// `N` are skipped.
pub fn orientation_task(
    genome: &Genome,
    split: &GenomeSplit,
    pfm: &Pfm,
    spec: &OrientationTaskSpec,
    rng: &mut impl Rng,
) -> Result<[Vec<OrientationExample>; 3]> {
    let margin = spec.length / 20;
    if spec.length < 2 * (margin + spec.jitter + pfm.len()) + 1 {
        return Err(SeqError::invalid(
            "task length",
            format!(
                "{} bases cannot hold two {}-base sites with {} bases of jitter",
                spec.length,
                pfm.len(),
                spec.jitter
            ),
        ));
    }
    let mut out: [Vec<OrientationExample>; 3] = Default::default();
    for (s, which) in Split::ALL.iter().enumerate() {
        let segments: Vec<_> = split
            .get(*which)
            .iter()
            .filter(|g| g.len() >= spec.length)
            .copied()
            .collect();
        if segments.is_empty() && spec.rows[s] > 0 {
            return Err(SeqError::invalid(
                "task length",
                format!(
                    "no {} segment is {} bases long",
                    which.as_str(),
                    spec.length
                ),
            ));
        }
        let weights: Vec<usize> = segments.iter().map(|g| g.len() - spec.length + 1).collect();
        let total: usize = weights.iter().sum();
        let mut tries = 0usize;
        while out[s].len() < spec.rows[s] {
            tries += 1;
            if tries > 100 * spec.rows[s] + 1000 {
                return Err(SeqError::invalid(
                    "task background",
                    format!("too few {}-base windows without N", spec.length),
                ));
            }
            let mut pick = rng.random_range(0..total);
            let mut seg = segments[0];
            for (g, w) in segments.iter().zip(&weights) {
                if pick < *w {
                    seg = *g;
                    break;
                }
                pick -= w;
            }
            let start = seg.start + pick;
            let bases = genome.bases(seg.record, start, start + spec.length);
            if bases.contains(&b'N') {
                continue;
            }
            let i = out[s].len();
            // Alternate classes so every split is balanced.
            let arrangement = if i.is_multiple_of(2) {
                Arrangement::Convergent
            } else if i % 4 == 1 {
                Arrangement::Divergent
            } else if rng.random_bool(0.5) {
                Arrangement::TandemForward
            } else {
                Arrangement::TandemReverse
            };
            let (left_forward, right_forward) = match arrangement {
                Arrangement::Convergent => (true, false),
                Arrangement::Divergent => (false, true),
                Arrangement::TandemForward => (true, true),
                Arrangement::TandemReverse => (false, false),
            };
            let mut sequence = bases.to_vec();
            let left = margin + rng.random_range(0..=spec.jitter);
            let right = spec.length - margin - pfm.len() - rng.random_range(0..=spec.jitter);
            for (at, forward) in [(left, left_forward), (right, right_forward)] {
                let mut site = pfm.sample(rng);
                if !forward {
                    site = reverse_complement(&site);
                }
                sequence[at..at + site.len()].copy_from_slice(&site);
            }
            out[s].push(OrientationExample {
                sequence,
                label: u8::from(arrangement == Arrangement::Convergent),
                arrangement,
                origin: (genome.records()[seg.record].name.clone(), start),
                sites: (left, right),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{split_genome, SplitConfig, SplitUnit};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const CTCF: &str = ">MA0139.1\tCTCF\nA  [ 87 167 281 56 8 ]\nC  [ 291 145 49 800 903 ]\nG  [ 76 414 449 21 0 ]\nT  [ 459 187 134 36 2 ]\n\n>X two words\nA [1 0]\nC [0 1]\nG [0 0]\nT [0 0]\n";

    #[test]
    fn parses_jaspar_and_normalises() {
        let m = parse_jaspar(CTCF, Path::new("m.jaspar")).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].id.as_str(), m[0].name.as_str()), ("MA0139.1", "CTCF"));
        assert_eq!(m[0].len(), 5);
        let p = m[0].probabilities[4];
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[1] - 903.0 / 913.0).abs() < 1e-12);
        assert_eq!(m[0].consensus(), b"TGGCC");
        assert_eq!(m[1].name, "two words");
        assert_eq!(m[1].sample(&mut ChaCha8Rng::seed_from_u64(1)), b"AC");
    }

    #[test]
    fn bad_jaspar_names_the_line() {
        let e = parse_jaspar(
            ">M1 x\nA [1 2]\nC [1]\nG [1 1]\nT [1 1]\n",
            Path::new("m.txt"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("m.txt") && e.contains("rows differ"), "{e}");
        let e = parse_jaspar(">M1 x\nA [1 2]\nG [1 1]\n", Path::new("m.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("expected the C row"),
            "{e}"
        );
        let e = parse_jaspar(">M1 x\nA [1 -2]\n", Path::new("m.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("'-2'"), "{e}");
    }

    #[test]
    fn orientation_task_is_balanced_and_composition_matched() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let bases: Vec<u8> = (0..20_000)
            .map(|_| b"ACGT"[rng.random_range(0..4)])
            .collect();
        let genome = Genome::from_records(vec![crate::SequenceRecord::new("g", bases)]);
        let split = split_genome(
            &genome.lengths(),
            &SplitConfig {
                unit: SplitUnit::Block(2000),
                fractions: [0.6, 0.2, 0.2],
                seed: 1,
            },
        )
        .unwrap();
        let pfm = Pfm {
            id: "M".into(),
            name: "m".into(),
            // A deterministic, non-palindromic site: AACCGT.
            probabilities: b"AACCGT"
                .iter()
                .map(|b| {
                    let mut p = [0.0; 4];
                    p[b"ACGT".iter().position(|x| x == b).unwrap()] = 1.0;
                    p
                })
                .collect(),
        };
        let spec = OrientationTaskSpec {
            length: 400,
            rows: [40, 8, 8],
            jitter: 30,
        };
        let splits = orientation_task(&genome, &split, &pfm, &spec, &mut rng).unwrap();
        for rows in &splits {
            let pos = rows.iter().filter(|r| r.label == 1).count();
            assert_eq!(pos * 2, rows.len());
        }
        let rc = reverse_complement(b"AACCGT");
        for r in &splits[0] {
            let (l, rt) = r.sites;
            assert!(l < 400 / 20 + 31 && rt + 6 > 400 - 400 / 20 - 31);
            let left = &r.sequence[l..l + 6];
            let right = &r.sequence[rt..rt + 6];
            let expect = match r.arrangement {
                Arrangement::Convergent => (&b"AACCGT"[..], &rc[..]),
                Arrangement::Divergent => (&rc[..], &b"AACCGT"[..]),
                Arrangement::TandemForward => (&b"AACCGT"[..], &b"AACCGT"[..]),
                Arrangement::TandemReverse => (&rc[..], &rc[..]),
            };
            assert_eq!((left, right), expect);
        }
        // Too short a window is refused, not panicked on.
        let short = OrientationTaskSpec { length: 50, ..spec };
        assert!(orientation_task(&genome, &split, &pfm, &short, &mut rng).is_err());
    }
}
