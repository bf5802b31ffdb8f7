//! Embedding files: streamed `.npy` (numpy) or `.safetensors`, with a `.tsv` beside them naming
//! each sequence (id, label, and its rows in the matrix).
//!
//! The writers stream rows to disk as they come, so any number of sequences fits in bounded
//! memory, and publish atomically (temp file + rename) when finished. They are written here
//! rather than with `ndarray-npy`/`safetensors` because both of those serialise a whole
//! in-memory array; reading uses the crates.
//!
//! Layout: `embeddings` is `rows x width` float32; per-sequence output has one row per
//! sequence, per-token/per-base output has `row_end - row_start` rows per sequence (the
//! `.safetensors` file also holds them as an int64 `row_offsets` tensor of length `n + 1`).

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use ndarray::Array2;
use tempfile::NamedTempFile;

use crate::EvalError;

/// Output format, from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFormat {
    /// numpy `.npy` (float32, C order).
    Npy,
    /// `.safetensors`.
    Safetensors,
}

impl StoreFormat {
    /// The format `path`'s extension names.
    pub fn of(path: &Path) -> Result<StoreFormat, EvalError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(StoreFormat::Npy),
            Some("safetensors") => Ok(StoreFormat::Safetensors),
            _ => Err(EvalError::Format {
                path: path.to_path_buf(),
                message: "embedding output must end in .npy or .safetensors".into(),
            }),
        }
    }
}

/// The `.tsv` that names the rows of an embedding file.
pub fn index_path(path: &Path) -> PathBuf {
    path.with_extension("tsv")
}

/// One sequence's entry in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Sequence id.
    pub id: String,
    /// Label as written in the task (empty when unlabelled).
    pub label: String,
    /// First row.
    pub row_start: usize,
    /// One past the last row.
    pub row_end: usize,
}

const NPY_HEADER: usize = 128;

/// Streams embeddings to a file.
pub struct EmbeddingWriter {
    path: PathBuf,
    format: StoreFormat,
    width: usize,
    data: BufWriter<NamedTempFile>,
    index: Vec<IndexEntry>,
    rows: usize,
}

impl EmbeddingWriter {
    /// Starts `path` (`.npy` or `.safetensors`) with vectors of `width`.
    pub fn create(path: &Path, width: usize) -> Result<Self, EvalError> {
        let format = StoreFormat::of(path)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        let tmp = dnalm_seq::temp_file_in(dir).map_err(|e| EvalError::io(dir, e))?;
        let mut data = BufWriter::with_capacity(1 << 20, tmp);
        if format == StoreFormat::Npy {
            // Reserved; the real header (with the final row count) is written by `finish`.
            data.write_all(&[b' '; NPY_HEADER])
                .map_err(|e| EvalError::io(path, e))?;
        }
        Ok(EmbeddingWriter {
            path: path.to_path_buf(),
            format,
            width,
            data,
            index: Vec::new(),
            rows: 0,
        })
    }

    /// Appends one sequence's vectors (`rows x width`).
    pub fn push(&mut self, id: &str, label: &str, vectors: &Array2<f32>) -> Result<(), EvalError> {
        if vectors.ncols() != self.width {
            return Err(EvalError::Mismatch {
                what: id.to_string(),
                message: format!(
                    "vectors of width {} where the file holds {}",
                    vectors.ncols(),
                    self.width
                ),
            });
        }
        // One write per sequence, not per value.
        let bytes: Vec<u8> = vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.data
            .write_all(&bytes)
            .map_err(|e| EvalError::io(&self.path, e))?;
        self.index.push(IndexEntry {
            id: id.to_string(),
            label: label.to_string(),
            row_start: self.rows,
            row_end: self.rows + vectors.nrows(),
        });
        self.rows += vectors.nrows();
        Ok(())
    }

    /// Number of sequences so far.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Completes and publishes the file and its index; returns the matrix shape.
    pub fn finish(self) -> Result<(usize, usize), EvalError> {
        let path = self.path.clone();
        let io = |e: std::io::Error| EvalError::io(&path, e);
        let mut tmp = self.data.into_inner().map_err(|e| io(e.into_error()))?;
        match self.format {
            StoreFormat::Npy => {
                let dict = format!(
                    "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
                    self.rows, self.width
                );
                let mut header = b"\x93NUMPY\x01\x00".to_vec();
                let len = NPY_HEADER - 10;
                header.extend_from_slice(&(len as u16).to_le_bytes());
                let mut text = dict.into_bytes();
                text.resize(len - 1, b' ');
                text.push(b'\n');
                header.extend(text);
                tmp.as_file_mut().seek(SeekFrom::Start(0)).map_err(io)?;
                tmp.as_file_mut().write_all(&header).map_err(io)?;
                tmp.as_file_mut().sync_all().map_err(io)?;
                tmp.persist(&path).map_err(|e| io(e.error))?;
            }
            StoreFormat::Safetensors => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let out = dnalm_seq::temp_file_in(dir).map_err(io)?;
                let data_bytes = self.rows * self.width * 4;
                let offsets: Vec<i64> = std::iter::once(0)
                    .chain(self.index.iter().map(|e| e.row_end as i64))
                    .collect();
                let header = serde_json::json!({
                    "__metadata__": {"format": "dnalm-embeddings", "index": index_path(&path).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()},
                    "embeddings": {"dtype": "F32", "shape": [self.rows, self.width], "data_offsets": [0, data_bytes]},
                    "row_offsets": {"dtype": "I64", "shape": [offsets.len()], "data_offsets": [data_bytes, data_bytes + offsets.len() * 8]},
                });
                let mut text = header.to_string().into_bytes();
                while !text.len().is_multiple_of(8) {
                    text.push(b' ');
                }
                let mut w = BufWriter::new(out);
                w.write_all(&(text.len() as u64).to_le_bytes())
                    .map_err(io)?;
                w.write_all(&text).map_err(io)?;
                let mut src = tmp.reopen().map_err(io)?;
                std::io::copy(&mut src, &mut w).map_err(io)?;
                for o in &offsets {
                    w.write_all(&o.to_le_bytes()).map_err(io)?;
                }
                let out = w.into_inner().map_err(|e| io(e.into_error()))?;
                out.as_file().sync_all().map_err(io)?;
                out.persist(&path).map_err(|e| io(e.error))?;
            }
        }
        let mut tsv = String::from("id\tlabel\trow_start\trow_end\n");
        for e in &self.index {
            tsv.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                e.id.replace(['\t', '\n'], " "),
                e.label,
                e.row_start,
                e.row_end
            ));
        }
        dnalm_seq::write_atomic(&index_path(&path), |w| w.write_all(tsv.as_bytes()))?;
        Ok((self.rows, self.width))
    }
}

/// Reads an embedding file and its index.
pub fn read_embeddings(path: &Path) -> Result<(Array2<f32>, Vec<IndexEntry>), EvalError> {
    let bad = |message: String| EvalError::Format {
        path: path.to_path_buf(),
        message,
    };
    let matrix = match StoreFormat::of(path)? {
        StoreFormat::Npy => {
            let file = File::open(path).map_err(|e| EvalError::io(path, e))?;
            ndarray_npy::ReadNpyExt::read_npy(file)
                .map_err(|e| bad(format!("not a 2-d float32 .npy: {e}")))?
        }
        StoreFormat::Safetensors => {
            let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
            let t = st
                .tensor("embeddings")
                .map_err(|_| bad("has no 'embeddings' tensor".into()))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
                return Err(bad("'embeddings' must be a 2-d F32 tensor".into()));
            }
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Array2::from_shape_vec((t.shape()[0], t.shape()[1]), values)
                .map_err(|e| bad(e.to_string()))?
        }
    };
    let index_file = index_path(path);
    let file = File::open(&index_file).map_err(|e| EvalError::io(&index_file, e))?;
    let mut index = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| EvalError::io(&index_file, e))?;
        if n == 0 {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let parsed = (f.len() == 4)
            .then(|| Some((f[2].parse::<usize>().ok()?, f[3].parse::<usize>().ok()?)))
            .flatten();
        let Some((row_start, row_end)) = parsed.filter(|(a, b)| a <= b && *b <= matrix.nrows())
        else {
            return Err(EvalError::Format {
                path: index_file.clone(),
                message: format!(
                    "line {}: expected id, label, row_start, row_end within the {} rows of {}",
                    n + 1,
                    matrix.nrows(),
                    path.display()
                ),
            });
        };
        index.push(IndexEntry {
            id: f[0].to_string(),
            label: f[1].to_string(),
            row_start,
            row_end,
        });
    }
    Ok((matrix, index))
}

/// Concatenates embedding files (with their indexes) that the shards of one job wrote, in shard
/// order, into `out` (same format as the parts): the rows of every part in order, so the result
/// is byte for byte what the whole job writes. One part is in memory at a time. Returns the
/// shape.
pub fn concat_embeddings(parts: &[PathBuf], out: &Path) -> Result<(usize, usize), EvalError> {
    let mut writer: Option<EmbeddingWriter> = None;
    for part in parts {
        let (matrix, index) = read_embeddings(part)?;
        let writer = match &mut writer {
            Some(w) => w,
            None => writer.insert(EmbeddingWriter::create(out, matrix.ncols())?),
        };
        if matrix.ncols() != writer.width {
            return Err(EvalError::Format {
                path: part.clone(),
                message: format!(
                    "vectors of width {} where {} has {}: not a shard of the same job",
                    matrix.ncols(),
                    parts[0].display(),
                    writer.width
                ),
            });
        }
        for e in &index {
            let rows = matrix
                .slice(ndarray::s![e.row_start..e.row_end, ..])
                .to_owned();
            writer.push(&e.id, &e.label, &rows)?;
        }
    }
    match writer {
        Some(w) => w.finish(),
        None => Err(EvalError::BadOption {
            option: "merge",
            message: "no embedding files given".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn shard_files_concatenate_into_the_whole_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [
            ("a", array![[1.0f32, 2.0]]),
            ("b", array![[3.0f32, 4.0], [5.0, 6.0]]),
            ("c", array![[7.0f32, 8.0]]),
        ];
        for ext in ["npy", "safetensors"] {
            let write = |name: &str, part: &[(&str, Array2<f32>)]| {
                let path = dir.path().join(name).join(format!("e.{ext}"));
                let mut w = EmbeddingWriter::create(&path, 2).unwrap();
                for (id, v) in part {
                    w.push(id, "1", v).unwrap();
                }
                w.finish().unwrap();
                path
            };
            let whole = write("whole", &rows);
            // The middle shard is empty.
            let parts = vec![
                write("s1", &rows[..1]),
                write("s2", &rows[1..1]),
                write("s3", &rows[1..]),
            ];
            let merged = dir.path().join("merged").join(format!("e.{ext}"));
            assert_eq!(concat_embeddings(&parts, &merged).unwrap(), (4, 2));
            for p in [merged.clone(), index_path(&merged)] {
                let w = whole.parent().unwrap().join(p.file_name().unwrap());
                assert_eq!(
                    std::fs::read(&p).unwrap(),
                    std::fs::read(&w).unwrap(),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn npy_and_safetensors_round_trip_with_their_index() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["e.npy", "e.safetensors"] {
            let path = dir.path().join(name);
            let mut w = EmbeddingWriter::create(&path, 2).unwrap();
            w.push("a", "1", &array![[1.0f32, 2.0]]).unwrap();
            w.push("b", "0", &array![[3.0f32, 4.0], [5.0, 6.0]])
                .unwrap();
            assert!(w.push("c", "0", &array![[1.0f32]]).is_err());
            assert_eq!(w.finish().unwrap(), (3, 2));
            let (m, index) = read_embeddings(&path).unwrap();
            assert_eq!(m, array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]);
            assert_eq!(index[1].id, "b");
            assert_eq!((index[1].row_start, index[1].row_end), (1, 3));
        }
        // The .npy header is what numpy expects: magic, version 1.0, 64-byte aligned.
        let bytes = std::fs::read(dir.path().join("e.npy")).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(bytes.len(), 128 + 6 * 4);
        assert!(EmbeddingWriter::create(&dir.path().join("e.txt"), 2).is_err());
        // An index row pointing past the matrix is named by line.
        std::fs::write(
            dir.path().join("e.tsv"),
            "id\tlabel\trow_start\trow_end\na\t1\t0\t9\n",
        )
        .unwrap();
        let err = read_embeddings(&dir.path().join("e.npy")).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2: expected id, label, row_start, row_end within the 3 rows"),
            "{err}"
        );
    }
}
