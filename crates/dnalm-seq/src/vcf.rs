//! Minimal VCF reading and annotation, for scoring variants.
//!
//! Hand-written on purpose: scoring adds one INFO key to the user's records and must give every
//! other byte back unchanged. A full VCF model (noodles-vcf) re-serialises records, which
//! normalises what users wrote; here a record is its original line plus the parsed fields
//! scoring needs (CHROM, POS, ID, REF, ALT), checked with errors that name the line.

use std::path::{Path, PathBuf};

use crate::{error::Result, open_text, Location, Position, SeqError};

/// One data line of a VCF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcfRecord {
    /// 1-based line number in the file.
    pub line: u64,
    /// The line as read (no newline).
    pub text: String,
    /// Chromosome.
    pub chrom: String,
    /// Position of the first REF base.
    pub pos: Position,
    /// ID column.
    pub id: String,
    /// Reference allele (uppercase).
    pub reference: Vec<u8>,
    /// Alternative alleles (uppercase); symbolic (`<DEL>`), breakend and `*` alleles are kept as
    /// written and are not scoreable.
    pub alts: Vec<Vec<u8>>,
}

impl VcfRecord {
    /// Whether an ALT allele is a plain base sequence that can be scored.
    pub fn is_sequence(allele: &[u8]) -> bool {
        !allele.is_empty() && allele.iter().all(|b| b"ACGTN".contains(b))
    }
}

/// A VCF file: meta lines, the `#CHROM` header, and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcf {
    /// The file.
    pub path: PathBuf,
    /// `##` lines, in order.
    pub meta: Vec<String>,
    /// The `#CHROM ...` line.
    pub header: String,
    /// Data lines.
    pub records: Vec<VcfRecord>,
}

/// Reads a VCF (plain or gzip).
pub fn read_vcf(path: &Path) -> Result<Vcf> {
    use std::io::BufRead;
    let reader = open_text(path)?;
    let err = |line: u64, message: String| SeqError::Format {
        path: path.to_path_buf(),
        at: Location::Line(line),
        message,
    };
    let mut meta = Vec::new();
    let mut header = None;
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|source| SeqError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let line = line.trim_end_matches('\r').to_string();
        if line.starts_with("##") {
            if header.is_some() {
                return Err(err(n, "'##' meta line after the #CHROM header".into()));
            }
            meta.push(line);
            continue;
        }
        if line.starts_with('#') {
            if !line.starts_with("#CHROM") {
                return Err(err(
                    n,
                    format!("expected the #CHROM header, found '{line}'"),
                ));
            }
            header = Some(line);
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if header.is_none() {
            return Err(err(n, "data line before the #CHROM header".into()));
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 8 {
            return Err(err(
                n,
                format!(
                    "{} tab-separated columns; a VCF record has at least 8",
                    cols.len()
                ),
            ));
        }
        let pos: Position = cols[1]
            .parse()
            .map_err(|_| err(n, format!("POS '{}' is not a positive integer", cols[1])))?;
        let reference = cols[3].to_ascii_uppercase().into_bytes();
        if !VcfRecord::is_sequence(&reference) {
            return Err(err(n, format!("REF '{}' is not a base sequence", cols[3])));
        }
        let alts = if cols[4] == "." {
            Vec::new()
        } else {
            cols[4]
                .split(',')
                .map(|a| a.to_ascii_uppercase().into_bytes())
                .collect()
        };
        records.push(VcfRecord {
            line: n,
            chrom: cols[0].to_string(),
            pos,
            id: cols[2].to_string(),
            reference,
            alts,
            text: line.clone(),
        });
    }
    let header = header.ok_or_else(|| err(1, "no #CHROM header line".into()))?;
    Ok(Vcf {
        path: path.to_path_buf(),
        meta,
        header,
        records,
    })
}

impl Vcf {
    /// The file with an INFO key added: a `##INFO` line before the header, and `key=value` on
    /// each record that has a value (records given `None` are unchanged).
    pub fn annotated(
        &self,
        key: &str,
        number: &str,
        kind: &str,
        description: &str,
        values: &[Option<String>],
    ) -> String {
        let mut out = String::new();
        for m in &self.meta {
            if !m.starts_with(&format!("##INFO=<ID={key},")) {
                out.push_str(m);
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "##INFO=<ID={key},Number={number},Type={kind},Description=\"{description}\">\n"
        ));
        out.push_str(&self.header);
        out.push('\n');
        for (r, v) in self.records.iter().zip(values) {
            match v {
                None => out.push_str(&r.text),
                Some(v) => {
                    let mut cols: Vec<String> = r.text.split('\t').map(str::to_string).collect();
                    let info: Vec<&str> = cols[7]
                        .split(';')
                        .filter(|f| {
                            *f != "." && !f.is_empty() && !f.starts_with(&format!("{key}="))
                        })
                        .collect();
                    let mut info: Vec<String> = info.iter().map(|s| s.to_string()).collect();
                    info.push(format!("{key}={v}"));
                    cols[7] = info.join(";");
                    out.push_str(&cols.join("\t"));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCF: &str = "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t5\trs1\tc\tT,G\t.\tPASS\t.\nchr1\t9\t.\tA\t<DEL>\t50\tPASS\tDP=3\n";

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.vcf");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn reads_and_annotates_keeping_everything_else() {
        let (_d, p) = write(VCF);
        let v = read_vcf(&p).unwrap();
        assert_eq!(v.records.len(), 2);
        let r = &v.records[0];
        assert_eq!((r.chrom.as_str(), r.pos.get(), r.line), ("chr1", 5, 4));
        assert_eq!(r.reference, b"C");
        assert_eq!(r.alts, vec![b"T".to_vec(), b"G".to_vec()]);
        assert!(!VcfRecord::is_sequence(&v.records[1].alts[0]));
        let out = v.annotated("S", "A", "Float", "score", &[Some("1.5,-2".into()), None]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[2],
            "##INFO=<ID=S,Number=A,Type=Float,Description=\"score\">"
        );
        assert_eq!(lines[4], "chr1\t5\trs1\tc\tT,G\t.\tPASS\tS=1.5,-2");
        assert_eq!(lines[5], "chr1\t9\t.\tA\t<DEL>\t50\tPASS\tDP=3");
    }

    #[test]
    fn bad_records_name_the_line() {
        for (text, want) in [
            (VCF.replace("\t5\t", "\tfive\t"), "line 4: POS 'five'"),
            (VCF.replace("\tc\t", "\tX\t"), "line 4: REF 'X'"),
            (VCF.replace("\tPASS\t.\n", "\n"), "line 4: 6 tab-separated"),
            (
                VCF.replace("#CHROM", "#chrom"),
                "line 3: expected the #CHROM",
            ),
            (
                "chr1\t1\t.\tA\tT\t.\t.\t.\n".into(),
                "line 1: data line before",
            ),
        ] {
            let (_d, p) = write(&text);
            let e = read_vcf(&p).unwrap_err().to_string();
            assert!(e.contains("v.vcf") && e.contains(want), "{want}: {e}");
        }
    }
}
