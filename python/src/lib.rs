//! `dnalm` for Python: the dnalm crates behind a thin PyO3 layer, numpy in and out.
//!
//! Every function here converts arguments, releases the GIL while the crates compute, and turns
//! their typed errors into Python exceptions with the CLI's one-line messages
//! (`FileNotFoundError` for a missing file, `ValueError` for bad input, `dnalm.Error` for the
//! rest). No logic of the crates is repeated: the Python package (`python/dnalm/`) only adds
//! argument checks and docstrings.

use std::path::PathBuf;

use dnalm_eval::{
    features::{
        embed::{parse_pooling, EmbedOptions, Embedder, Granularity, ModelSpec},
        Labelled, Targets,
    },
    finetune::{finetune_to, FinetuneOptions},
    multitask::{parse_groups, Multitask, MultitaskOptions},
    probes::{run_probe, ProbeKind, ProbeOptions, SplitFeatures},
    relevance,
    score::Scorer,
};
use dnalm_model::{Checkpoint, DeviceName};
use dnalm_seq::{
    alphabet,
    fastx::{FastxReader, SequenceRecord},
    suite::TaskSource,
    task::{Label, TaskKind},
    Split,
};
use dnalm_tokenize::{
    encode_batch, AnyTokenizer, BatchOptions, Padding, Template, Tokenizer as _, TokenizerSpec,
};
use numpy::{
    ndarray::{Array1, Array2},
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2,
};
use pyo3::{
    create_exception,
    exceptions::{PyException, PyFileNotFoundError, PyTypeError, PyValueError},
    prelude::*,
    types::{PyDict, PyList},
};

create_exception!(
    _dnalm,
    Error,
    PyException,
    "An error of dnalm that is neither a missing file nor bad input."
);

/// Sequences per chunk between checks for Ctrl-C (and progress updates).
const CHUNK: usize = 256;

/// The extension's allocator, as the CLI's: mimalloc, keeping freed memory for reuse (the
/// forward passes allocate and free the same activation buffers batch after batch). It serves
/// this library's Rust allocations only; Python's objects keep Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The threads dnalm computes on from Python: a pool of its own whose workers flush subnormal
/// floats to zero, as the CLI's process does (`dnalm_model::float_mode`). The caller's thread and
/// any other library's threads keep their floating-point mode.
fn pool() -> PyResult<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("dnalm-{i}"))
        .start_handler(|_| dnalm_model::float_mode::flush_subnormals())
        .build()
        .map_err(|e| Error::new_err(format!("starting dnalm's threads: {e}")))?;
    Ok(POOL.get_or_init(|| pool))
}

/// Runs `work` with the GIL released, on dnalm's threads.
fn compute<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    let pool = pool()?;
    Ok(py.detach(|| pool.install(work)))
}

/// The CLI's one-line message of an error and its sources, as the matching Python exception.
fn to_py(e: &(dyn std::error::Error + 'static)) -> PyErr {
    let mut message = e.to_string();
    let mut not_found = false;
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            not_found |= io.kind() == std::io::ErrorKind::NotFound;
        }
        if !std::ptr::eq(err, e) {
            let text = err.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
        }
        source = err.source();
    }
    if not_found {
        return PyFileNotFoundError::new_err(message);
    }
    // Bad input anywhere in the chain (e.g. a model's config error inside a fine-tuning error).
    let is_bad_input = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<dnalm_seq::SeqError>().is_some()
            || e.downcast_ref::<dnalm_tokenize::TokenizeError>().is_some()
            || e.downcast_ref::<dnalm_model::ModelError>().is_some()
            || matches!(
                e.downcast_ref::<dnalm_eval::EvalError>(),
                Some(
                    dnalm_eval::EvalError::BadOption { .. }
                        // (transparent: their own errors are not in the source chain)
                        | dnalm_eval::EvalError::Model(_)
                        | dnalm_eval::EvalError::Seq(_)
                        | dnalm_eval::EvalError::Tokenize(_)
                        | dnalm_eval::EvalError::Mismatch { .. }
                        | dnalm_eval::EvalError::TooLittleData { .. }
                        | dnalm_eval::EvalError::NonFinite { .. }
                        | dnalm_eval::EvalError::Format { .. }
                )
            )
    };
    let bad_input = std::iter::successors(Some(e), |err| err.source()).any(is_bad_input);
    if bad_input {
        PyValueError::new_err(message)
    } else {
        Error::new_err(message)
    }
}

/// `.map_err(err)` for any of the crates' errors.
fn err<E: std::error::Error + 'static>(e: E) -> PyErr {
    to_py(&e)
}

/// Sequences as given (str) -> normalised bases, naming the sequence whose base is invalid.
fn normalise(sequences: &[String]) -> PyResult<Vec<Vec<u8>>> {
    sequences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            alphabet::normalize(s.as_bytes())
                .map(|(seq, _)| seq)
                .map_err(|b| {
                    PyValueError::new_err(format!(
                        "sequence {i}: invalid base {:?} at position {} (the alphabet is ACGTN, \
                         IUPAC codes read as N)",
                        b.byte as char,
                        b.offset + 1
                    ))
                })
        })
        .collect()
}

/// Runs `work` on chunks of `items` with the GIL released, checking for Ctrl-C between chunks
/// and advancing an optional progress bar (stderr).
fn chunked<T: Sync, R: Send>(
    py: Python<'_>,
    items: &[T],
    what: &str,
    progress: bool,
    work: impl Fn(&[T]) -> PyResult<Vec<R>> + Sync,
) -> PyResult<Vec<R>> {
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}]"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(CHUNK) {
        py.check_signals()?;
        out.extend(compute(py, || work(chunk))??);
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(out)
}

/// A DNA tokenizer: a built-in (`nucleotide`, `kmer:6`, `kmer:6:non-overlapping`) or a
/// tokenizer directory (`tokenizer.json` / `vocab.txt`).
#[pyclass(module = "dnalm._dnalm", frozen)]
struct Tokenizer {
    /// Boxed for the same reason as [`Model::inner`].
    inner: Box<AnyTokenizer>,
}

#[pymethods]
impl Tokenizer {
    /// Loads a tokenizer from a directory or builds a built-in one from its spec.
    #[staticmethod]
    #[pyo3(signature = (spec, template = "bert"))]
    fn load(spec: &str, template: &str) -> PyResult<Tokenizer> {
        let template = match template {
            "bert" => Template::Bert,
            "causal" => Template::Causal,
            "none" => Template::None,
            other => {
                return Err(PyValueError::new_err(format!(
                    "template '{other}' is not bert, causal or none"
                )))
            }
        };
        let spec: TokenizerSpec = spec.parse().map_err(PyValueError::new_err)?;
        Ok(Tokenizer {
            inner: Box::new(spec.build(template).map_err(err)?),
        })
    }

    /// Vocabulary size.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab().len()
    }

    /// `(ids, offsets, special_tokens_mask, attention_mask)` per sequence, special tokens
    /// included: int arrays, offsets `tokens x 2` (base spans).
    #[pyo3(signature = (sequences, add_special_tokens = true, max_length = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        sequences: Vec<String>,
        add_special_tokens: bool,
        max_length: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let seqs = normalise(&sequences)?;
        let options = BatchOptions {
            add_special_tokens,
            max_length,
            truncation: max_length.is_some(),
            padding: Padding::None,
        };
        let encodings = compute(py, || {
            let refs: Vec<&[u8]> = seqs.iter().map(Vec::as_slice).collect();
            encode_batch(&*self.inner, &refs, &options).map(|b| b.encodings)
        })?;
        let encodings = encodings.map_err(err)?;
        encodings
            .into_iter()
            .map(|e| {
                let d = PyDict::new(py);
                let n = e.ids.len();
                d.set_item("ids", Array1::from(e.ids).into_pyarray(py))?;
                let flat: Vec<u64> = e
                    .offsets
                    .iter()
                    .flat_map(|&(a, b)| [a as u64, b as u64])
                    .collect();
                let offsets = Array2::from_shape_vec((n, 2), flat)
                    .map_err(|e| Error::new_err(e.to_string()))?;
                d.set_item("offsets", offsets.into_pyarray(py))?;
                d.set_item(
                    "special_tokens_mask",
                    Array1::from(e.special_tokens_mask).into_pyarray(py),
                )?;
                d.set_item(
                    "attention_mask",
                    Array1::from(e.attention_mask).into_pyarray(py),
                )?;
                Ok(d)
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Tokenizer({}, vocabulary {})",
            self.inner.kind(),
            self.inner.vocab().len()
        )
    }
}

/// A model dnalm reads: a dnalm checkpoint or an imported Hugging Face directory.
#[pyclass(module = "dnalm._dnalm", frozen)]
struct Model {
    /// Boxed: the checkpoint holds 64-byte-aligned state (cache-padded), and Python allocates
    /// objects with 16-byte alignment, so it cannot live inline in the Python object.
    inner: Box<Checkpoint>,
}

#[pymethods]
impl Model {
    /// Loads a model directory (`random:DIR` for random weights of the same shape) onto
    /// `device` (`cpu`; `vulkan[:N]` in a build with the `vulkan` feature).
    #[staticmethod]
    #[pyo3(signature = (path, device = "cpu"))]
    fn load(py: Python<'_>, path: &str, device: &str) -> PyResult<Model> {
        let device: DeviceName = device
            .parse()
            .map_err(|e: dnalm_model::ModelError| PyValueError::new_err(e.to_string()))?;
        let device = device
            .open()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let spec = ModelSpec::parse(path);
        if !spec.dir.exists() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no such model directory",
                spec.dir.display()
            )));
        }
        let inner = compute(py, || spec.load(&device))?.map_err(err)?;
        Ok(Model {
            inner: Box::new(inner),
        })
    }

    /// Number of blocks.
    #[getter]
    fn n_layers(&self) -> usize {
        self.inner.n_layers()
    }

    /// Width of one layer's vectors.
    #[getter]
    fn width(&self) -> usize {
        self.inner.width()
    }

    /// The model's tokenizer.
    #[getter]
    fn tokenizer(&self) -> Tokenizer {
        Tokenizer {
            inner: Box::new(self.inner.tokenizer.clone()),
        }
    }

    /// Embeddings: `sequences x width` (`per="sequence"`) or one `tokens|bases x width` array
    /// per sequence.
    #[pyo3(signature = (sequences, layers = vec![-1], pool = "mean", per = "sequence", rc = false, batch_tokens = 16_384, progress = false))]
    #[allow(clippy::too_many_arguments)]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        sequences: Vec<String>,
        layers: Vec<i64>,
        pool: &str,
        per: &str,
        rc: bool,
        batch_tokens: usize,
        progress: bool,
    ) -> PyResult<Py<PyAny>> {
        let granularity: Granularity = per.parse().map_err(PyValueError::new_err)?;
        let options = EmbedOptions {
            layers,
            pooling: parse_pooling(pool).map_err(err)?,
            granularity,
            reverse_complement: rc,
            overlap: None,
            batch_tokens,
        };
        let embedder = Embedder::new(&self.inner, options).map_err(err)?;
        let width = embedder.width();
        let seqs = normalise(&sequences)?;
        let vectors = chunked(py, &seqs, "embedding", progress, |chunk| {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            embedder.embed(&refs).map_err(err)
        })?;
        if granularity == Granularity::Sequence {
            let mut data = Vec::with_capacity(vectors.len() * width);
            for v in vectors {
                data.extend(v.iter().copied());
            }
            let n = data.len() / width.max(1);
            let array = Array2::from_shape_vec((n, width), data)
                .map_err(|e| Error::new_err(e.to_string()))?;
            Ok(array.into_pyarray(py).into_any().unbind())
        } else {
            let arrays: Vec<Bound<'py, PyArray2<f32>>> = vectors
                .into_iter()
                .map(|v| to_numpy(v).map(|a| a.into_pyarray(py)))
                .collect::<PyResult<_>>()?;
            Ok(arrays.into_pyobject(py)?.into_any().unbind())
        }
    }

    /// Log-likelihood of each sequence (nats): exact for decoders, pseudo-likelihood (each token
    /// masked in turn) for encoders.
    #[pyo3(signature = (sequences, batch_tokens = 16_384, progress = false))]
    fn score_likelihood<'py>(
        &self,
        py: Python<'py>,
        sequences: Vec<String>,
        batch_tokens: usize,
        progress: bool,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let scorer = Scorer::new(&self.inner, batch_tokens).map_err(err)?;
        let seqs = normalise(&sequences)?;
        let scores = chunked(py, &seqs, "scoring", progress, |chunk| {
            chunk
                .iter()
                .map(|s| scorer.sequence(s).map(|r| r.log_likelihood).map_err(err))
                .collect()
        })?;
        Ok(Array1::from(scores).into_pyarray(py))
    }

    /// The LM logits of each sequence (`tokens x vocab`, special tokens included; one window
    /// per sequence).
    #[pyo3(signature = (sequences, progress = false))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        sequences: Vec<String>,
        progress: bool,
    ) -> PyResult<Vec<Bound<'py, PyArray2<f32>>>> {
        let scorer = Scorer::new(&self.inner, 16_384).map_err(err)?;
        let seqs = normalise(&sequences)?;
        let logits = chunked(py, &seqs, "logits", progress, |chunk| {
            chunk
                .iter()
                .map(|s| scorer.logits(s).map_err(err))
                .collect()
        })?;
        logits
            .into_iter()
            .map(|l| to_numpy(l).map(|a| a.into_pyarray(py)))
            .collect()
    }

    /// Effects of the variants of a VCF against its reference genome, as `dnalm score variants`:
    /// one dict per ALT (`chrom`, `pos` 1-based, `id`, `ref`, `alt`, `llr` = log-likelihood
    /// ratio ALT vs REF in nats or None for a symbolic allele, `method`).
    #[pyo3(signature = (vcf, reference, flank = 128, batch_tokens = 16_384))]
    fn score_variants<'py>(
        &self,
        py: Python<'py>,
        vcf: PathBuf,
        reference: PathBuf,
        flank: usize,
        batch_tokens: usize,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let scorer = Scorer::new(&self.inner, batch_tokens).map_err(err)?;
        let (records, effects) = compute(py, || {
            let records = dnalm_seq::vcf::read_vcf(&vcf).map_err(err)?;
            let genome = dnalm_seq::Genome::read(&reference).map_err(err)?;
            let effects = scorer.variants(&records, &genome, flank).map_err(err)?;
            Ok::<_, PyErr>((records, effects))
        })??;
        let mut rows = Vec::new();
        for (r, e) in records.records.iter().zip(effects) {
            for (alt, effect) in r.alts.iter().zip(e.alts) {
                let d = PyDict::new(py);
                d.set_item("chrom", &r.chrom)?;
                d.set_item("pos", r.pos.get())?;
                d.set_item("id", &r.id)?;
                d.set_item("ref", String::from_utf8_lossy(&r.reference).into_owned())?;
                d.set_item("alt", String::from_utf8_lossy(alt).into_owned())?;
                d.set_item("llr", effect.map(|(llr, _)| llr))?;
                d.set_item("method", effect.map(|(_, m)| m.as_str()))?;
                rows.push(d);
            }
        }
        Ok(rows)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({}, {} layers, width {})",
            self.inner.source,
            self.inner.n_layers(),
            self.inner.width()
        )
    }
}

/// A labelled task: a dnalm task directory or `FORMAT:DIR` of a standard suite.
#[pyclass(module = "dnalm._dnalm", frozen)]
struct Task {
    /// Boxed for the same reason as [`Model::inner`].
    inner: Box<dnalm_seq::Task>,
}

#[pymethods]
impl Task {
    /// Loads a task (`genome`: the reference FASTA of a BEND task).
    #[staticmethod]
    #[pyo3(signature = (spec, genome = None))]
    fn load(py: Python<'_>, spec: &str, genome: Option<PathBuf>) -> PyResult<Task> {
        let source = TaskSource::parse(spec, genome.as_deref());
        let inner = compute(py, || source.load())?.map_err(err)?;
        Ok(Task {
            inner: Box::new(inner),
        })
    }

    /// The task's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.spec.name.clone()
    }

    /// Number of classes (per-base: classes of a base; None for a regression or multi-label
    /// task).
    #[getter]
    fn num_classes(&self) -> Option<u32> {
        match &self.inner.spec.kind {
            TaskKind::Classification { num_classes, .. } => Some(*num_classes),
            TaskKind::PerBase { label_names } => Some(label_names.len() as u32),
            TaskKind::Regression | TaskKind::MultiLabel { .. } => None,
        }
    }

    /// Whether every base carries a class (a per-base task: segmentation).
    #[getter]
    fn per_base(&self) -> bool {
        matches!(self.inner.spec.kind, TaskKind::PerBase { .. })
    }

    /// Whether each sequence carries any subset of the labels (`label_names`).
    #[getter]
    fn multi_label(&self) -> bool {
        matches!(self.inner.spec.kind, TaskKind::MultiLabel { .. })
    }

    /// Class (or label) names, when the task has them.
    #[getter]
    fn label_names(&self) -> Option<Vec<String>> {
        match &self.inner.spec.kind {
            TaskKind::Classification { label_names, .. } => label_names.clone(),
            TaskKind::Regression => None,
            TaskKind::MultiLabel { label_names } | TaskKind::PerBase { label_names } => {
                Some(label_names.clone())
            }
        }
    }

    /// How the task was read (suite layout, carved validation split...).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.inner.notes.clone()
    }

    /// One split (`train`, `valid`, `test`): `{"ids": [...], "sequences": [...], "labels":
    /// int64 (classes) or float64 (values) array, (multi-label) a rows x labels bool array, or
    /// (per-base) a list of uint8 arrays, each base's class}`.
    fn split<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let split = Split::parse(name).ok_or_else(|| {
            PyValueError::new_err(format!("split '{name}' is not train, valid or test"))
        })?;
        let rows: Vec<_> = self.inner.split(split).collect();
        let d = PyDict::new(py);
        d.set_item("ids", rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())?;
        d.set_item(
            "sequences",
            rows.iter()
                .map(|r| String::from_utf8_lossy(&r.sequence).into_owned())
                .collect::<Vec<_>>(),
        )?;
        match &self.inner.spec.kind {
            TaskKind::Regression => {
                let v: Vec<f64> = rows
                    .iter()
                    .map(|r| match &r.label {
                        Label::Value(v) => *v,
                        Label::Class(k) => f64::from(*k),
                        Label::Labels(set) => set.len() as f64,
                        Label::Bases(c) => c.len() as f64,
                    })
                    .collect();
                d.set_item("labels", Array1::from(v).into_pyarray(py))?;
            }
            TaskKind::Classification { .. } => {
                let v: Vec<i64> = rows
                    .iter()
                    .map(|r| match &r.label {
                        Label::Class(k) => i64::from(*k),
                        Label::Value(v) => *v as i64,
                        Label::Labels(set) => set.first().map_or(0, |&k| i64::from(k)),
                        Label::Bases(c) => c.first().map_or(0, |&k| i64::from(k)),
                    })
                    .collect();
                d.set_item("labels", Array1::from(v).into_pyarray(py))?;
            }
            TaskKind::MultiLabel { .. } => {
                let targets = dnalm_eval::features::tasks::targets(&self.inner, &rows);
                if let Targets::Labels { present, .. } = targets {
                    let present =
                        Array2::from_shape_vec(present.dim(), present.iter().copied().collect())
                            .map_err(|e| Error::new_err(e.to_string()))?;
                    d.set_item("labels", present.into_pyarray(py))?;
                }
            }
            TaskKind::PerBase { .. } => {
                let labels = PyList::empty(py);
                for r in &rows {
                    if let Label::Bases(c) = &r.label {
                        labels.append(Array1::from(c.clone()).into_pyarray(py))?;
                    }
                }
                d.set_item("labels", labels)?;
            }
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Task({}, {} train / {} valid / {} test)",
            self.inner.spec.name,
            self.inner.split(Split::Train).count(),
            self.inner.split(Split::Valid).count(),
            self.inner.split(Split::Test).count()
        )
    }
}

/// Reads FASTA/FASTQ records (plain, gzip, bgzip) as `(name, sequence)`, normalised.
#[pyclass(module = "dnalm._dnalm", unsendable)]
struct FastaReader {
    /// Boxed for the same reason as [`Model::inner`].
    reader: Box<FastxReader>,
    record: SequenceRecord,
}

#[pymethods]
impl FastaReader {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(mut slf: PyRefMut<'_, Self>) -> PyResult<Option<(String, String)>> {
        let this = &mut *slf;
        if this.reader.read_record(&mut this.record).map_err(err)? {
            Ok(Some((
                this.record.name.clone(),
                String::from_utf8_lossy(&this.record.sequence).into_owned(),
            )))
        } else {
            Ok(None)
        }
    }
}

/// Opens a FASTA/FASTQ file for iteration.
#[pyfunction]
fn read_fasta(path: PathBuf) -> PyResult<FastaReader> {
    Ok(FastaReader {
        reader: Box::new(FastxReader::from_path(&path).map_err(err)?),
        record: SequenceRecord::default(),
    })
}

/// The crates' array (ndarray 0.16) -> numpy's (the `numpy` crate's ndarray), in row-major
/// order whatever the input's layout.
fn to_numpy(v: ndarray::Array2<f32>) -> PyResult<Array2<f32>> {
    let dim = v.dim();
    let data = if v.is_standard_layout() {
        v.into_raw_vec_and_offset().0
    } else {
        v.iter().copied().collect()
    };
    Array2::from_shape_vec(dim, data).map_err(|e| Error::new_err(e.to_string()))
}

/// numpy features (float32, `rows x dims`) -> the crates' array.
fn features(x: &PyReadonlyArray2<'_, f32>) -> PyResult<ndarray::Array2<f32>> {
    let view = x.as_array();
    let (rows, cols) = view.dim();
    ndarray::Array2::from_shape_vec((rows, cols), view.iter().copied().collect())
        .map_err(|e| Error::new_err(e.to_string()))
}

/// Integer labels are classes (`num_classes`: given, else the largest label + 1); float labels
/// are regression targets.
fn targets(labels: &Bound<'_, PyAny>, num_classes: Option<usize>) -> PyResult<Targets> {
    if let Ok(ints) = labels.extract::<PyReadonlyArray1<'_, i64>>() {
        let labels: Vec<u32> = ints
            .as_array()
            .iter()
            .map(|&k| {
                u32::try_from(k)
                    .map_err(|_| PyValueError::new_err(format!("label {k} is not a class index")))
            })
            .collect::<PyResult<_>>()?;
        let n = num_classes.unwrap_or_else(|| labels.iter().max().map_or(0, |&k| k as usize + 1));
        return Ok(Targets::Classes {
            labels,
            num_classes: n,
        });
    }
    if let Ok(values) = labels.extract::<PyReadonlyArray1<'_, f64>>() {
        return Ok(Targets::Values(values.as_array().to_vec()));
    }
    if let Ok(present) = labels.extract::<PyReadonlyArray2<'_, bool>>() {
        let view = present.as_array();
        let present = ndarray::Array2::from_shape_vec(view.dim(), view.iter().copied().collect())
            .map_err(|e| Error::new_err(e.to_string()))?;
        let names = (0..present.ncols()).map(|k| k.to_string()).collect();
        return Ok(Targets::Labels { present, names });
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "labels: expected a 1-d int64 (classes) or float64 (values) numpy array, or a 2-d bool \
         array (rows x labels, multi-label)",
    ))
}

/// LogME evidence per sample of `features` for `labels` (You et al. 2021), as `dnalm
/// relevance` computes it.
#[pyfunction]
#[pyo3(signature = (features, labels, num_classes = None))]
fn logme(
    py: Python<'_>,
    features: PyReadonlyArray2<'_, f32>,
    labels: &Bound<'_, PyAny>,
    num_classes: Option<usize>,
) -> PyResult<f64> {
    let x = self::features(&features)?;
    let y = targets(labels, num_classes)?;
    compute(py, || relevance::logme(x.view(), &y))?.map_err(err)
}

/// H-score of `features` for class `labels` (Bao et al. 2019).
#[pyfunction]
#[pyo3(signature = (features, labels, num_classes = None))]
fn h_score(
    py: Python<'_>,
    features: PyReadonlyArray2<'_, f32>,
    labels: &Bound<'_, PyAny>,
    num_classes: Option<usize>,
) -> PyResult<f64> {
    let x = self::features(&features)?;
    let Targets::Classes {
        labels,
        num_classes,
    } = targets(labels, num_classes)?
    else {
        return Err(PyValueError::new_err(
            "the H-score needs class labels (an int64 array)",
        ));
    };
    compute(py, || relevance::h_score(x.view(), &labels, num_classes))?.map_err(err)
}

/// A probe on frozen features under dnalm's protocol (hyperparameter on valid, headline fit on
/// all training rows, `folds` refits for the sd): `{"chosen": ..., "metrics": {name: (mean,
/// sd)}}` of the test split.
#[pyfunction]
#[pyo3(signature = (train, valid, test, kind = "linear", folds = 5, seed = 0, num_classes = None))]
#[allow(clippy::too_many_arguments)]
fn probe<'py>(
    py: Python<'py>,
    train: (PyReadonlyArray2<'py, f32>, Bound<'py, PyAny>),
    valid: (PyReadonlyArray2<'py, f32>, Bound<'py, PyAny>),
    test: (PyReadonlyArray2<'py, f32>, Bound<'py, PyAny>),
    kind: &str,
    folds: usize,
    seed: u64,
    num_classes: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let kind: ProbeKind = kind.parse().map_err(PyValueError::new_err)?;
    let labelled = |(x, y): &(PyReadonlyArray2<'py, f32>, Bound<'py, PyAny>),
                    what: &str,
                    n: Option<usize>|
     -> PyResult<Labelled> {
        Labelled::new(features(x)?, targets(y, n)?, what).map_err(err)
    };
    let train = labelled(&train, "train", num_classes)?;
    let n = match &train.y {
        Targets::Classes { num_classes, .. } => Some(*num_classes),
        Targets::Values(_) | Targets::Labels { .. } | Targets::Bases { .. } => None,
    };
    let data = SplitFeatures {
        train,
        valid: labelled(&valid, "valid", n)?,
        test: labelled(&test, "test", n)?,
    };
    let options = ProbeOptions {
        folds,
        seed,
        ..ProbeOptions::default()
    };
    let report = py
        .detach(|| run_probe(kind, &data, &options))
        .map_err(err)?;
    let d = PyDict::new(py);
    d.set_item("chosen", report.chosen)?;
    let metrics = PyDict::new(py);
    for (name, s) in report.summary {
        metrics.set_item(name, (s.mean, s.sd))?;
    }
    d.set_item("metrics", metrics)?;
    Ok(d)
}

/// The fine-tuning settings `dnalm.finetune` and `dnalm.multitask` take as keywords.
const FINETUNE_KEYS: [&str; 14] = [
    "lora",
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "patience",
    "eval_every",
    "head",
    "pooling",
    "class_weights",
    "train_last",
    "seeds",
    "seed",
    "device",
];

/// Fine-tuning settings from the keywords in `given` (any of [`FINETUNE_KEYS`]; the others keep
/// `dnalm finetune`'s defaults, `seeds` defaults to `default_seeds`), with the CLI's messages.
fn finetune_options(
    given: Option<&Bound<'_, PyDict>>,
    default_seeds: usize,
) -> PyResult<FinetuneOptions> {
    let bad = |what: &str, e: String| PyValueError::new_err(format!("{what}: {e}"));
    let mut options = FinetuneOptions {
        seeds: default_seeds,
        ..FinetuneOptions::default()
    };
    let Some(given) = given else {
        return Ok(options);
    };
    for (key, value) in given.iter() {
        let key: String = key.extract()?;
        if value.is_none() {
            match key.as_str() {
                "lora" => options.lora = None,
                "eval_every" => options.fit.eval_every = None,
                "train_last" => options.train_last = None,
                _ => return Err(bad(&key, "may not be None".into())),
            }
            continue;
        }
        let text = || -> PyResult<String> { Ok(value.str()?.to_string()) };
        // A count, or a TypeError that names the keyword.
        let count = || -> PyResult<usize> {
            value
                .extract()
                .map_err(|e| PyTypeError::new_err(format!("{key}: expected a count: {e}")))
        };
        match key.as_str() {
            "lora" => options.lora = Some(text()?.parse().map_err(|e| bad("lora", e))?),
            "epochs" => options.fit.epochs = count()?,
            "max_steps" => options.fit.max_steps = Some(count()?),
            "lr" => options.lr = text()?.parse().map_err(|e| bad("lr", e))?,
            "batch_size" => options.fit.batch_size = count()?,
            "patience" => options.fit.patience = count()?,
            "eval_every" => options.fit.eval_every = Some(count()?),
            "head" => options.head = text()?.parse().map_err(|e| bad("head", e))?,
            "pooling" => options.pooling = parse_pooling(&text()?).map_err(err)?,
            "class_weights" => {
                options.fit.balance = text()?.parse().map_err(|e| bad("class_weights", e))?
            }
            "train_last" => options.train_last = Some(count()?),
            "seeds" => options.seeds = count()?,
            "seed" => options.fit.seed = count()? as u64,
            "device" => {
                options.fit.device = text()?
                    .parse()
                    .map_err(|e: dnalm_model::ModelError| bad("device", e.to_string()))?
            }
            other => {
                return Err(bad(
                    other,
                    format!("not a fine-tuning setting ({})", FINETUNE_KEYS.join(", ")),
                ))
            }
        }
    }
    Ok(options)
}

/// Fine-tunes a model on a task and saves the first seed's network to `output` (a fine-tuned
/// checkpoint, or with `lora` an adapter directory): what `dnalm finetune` does, with its
/// defaults. Returns the report as JSON (the wrapper parses it).
#[pyfunction]
#[pyo3(signature = (model, task, output, **options))]
fn finetune(
    py: Python<'_>,
    model: &str,
    task: &Task,
    output: PathBuf,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let options = finetune_options(options, 1)?;
    let spec = ModelSpec::parse(model);
    let task = &*task.inner;
    let (report, _) = compute(py, || finetune_to(&spec, task, &options, &output))?.map_err(err)?;
    serde_json::to_string(&report).map_err(|e| Error::new_err(e.to_string()))
}

/// Trains one model on several tasks (one head each) as `dnalm multitask` does: `groups` is
/// `None` (all tasks in one group), `"auto"` (the plan's groups) or `"A+B,C"`; `plan_only`
/// measures the plan and stops. Each task's kept network is saved under `output/models/<task>`
/// when `output` is given. Returns `{"plan": ..., "report": ...}` as JSON.
#[pyfunction]
#[pyo3(signature = (
    model, tasks, output = None, groups = None, plan_only = false, plan_steps = 200,
    sampling = "proportional", **options
))]
#[allow(clippy::too_many_arguments)]
fn multitask(
    py: Python<'_>,
    model: &str,
    tasks: Vec<PyRef<'_, Task>>,
    output: Option<PathBuf>,
    groups: Option<&str>,
    plan_only: bool,
    plan_steps: usize,
    sampling: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let options = MultitaskOptions {
        finetune: finetune_options(options, 3)?,
        sampling: sampling
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("sampling: {e}")))?,
    };
    let tasks: Vec<dnalm_seq::Task> = tasks.iter().map(|t| (*t.inner).clone()).collect();
    let names: Vec<String> = tasks.iter().map(|t| t.spec.name.clone()).collect();
    let named = match groups {
        None | Some("auto") => None,
        Some(g) => Some(parse_groups(g, &names).map_err(err)?),
    };
    let spec = ModelSpec::parse(model);
    let run = || -> Result<serde_json::Value, dnalm_eval::EvalError> {
        let mt = Multitask::new(&spec, &tasks, options)?;
        let mut quiet = |_: &str| {};
        let plan = (plan_only || groups == Some("auto"))
            .then(|| mt.plan(plan_steps, &mut quiet))
            .transpose()?;
        if plan_only {
            return Ok(serde_json::json!({ "plan": plan, "report": null }));
        }
        let groups = match (named, &plan) {
            (Some(groups), _) => groups,
            (None, Some(plan)) => plan.group_indices.clone(),
            (None, None) => vec![(0..names.len()).collect()],
        };
        let save = output.as_ref().map(|o| o.join("models"));
        let report = mt.train(&groups, plan.clone(), save.as_deref(), &mut quiet)?;
        Ok(serde_json::json!({ "plan": plan, "report": report }))
    };
    let value = compute(py, run)?.map_err(err)?;
    Ok(value.to_string())
}

/// The extension module (`dnalm._dnalm`); `import dnalm` re-exports it.
#[pymodule]
fn _dnalm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    dnalm_model::allocator::retain_freed_memory();
    m.add("Error", m.py().get_type::<Error>())?;
    m.add_class::<Tokenizer>()?;
    m.add_class::<Model>()?;
    m.add_class::<Task>()?;
    m.add_class::<FastaReader>()?;
    m.add_function(wrap_pyfunction!(read_fasta, m)?)?;
    m.add_function(wrap_pyfunction!(logme, m)?)?;
    m.add_function(wrap_pyfunction!(h_score, m)?)?;
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add_function(wrap_pyfunction!(finetune, m)?)?;
    m.add_function(wrap_pyfunction!(multitask, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
