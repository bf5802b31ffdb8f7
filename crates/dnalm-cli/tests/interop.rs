//! `dnalm convert` and `--model DIR` on Hugging Face checkpoints (issue 5), on the golden
//! fixtures that `scripts/hf_interop.py` made with `transformers`, plus the bad inputs the issue
//! names: no config.json, an unsupported model_type, missing or mis-shaped tensors, a tokenizer
//! larger than the embedding.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_one_line_error, dnalm, ok, root};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    root().join("crates/dnalm-eval/tests/golden/hf").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn convert_dnabert_and_nt_then_embed_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join("seqs.fa");
    std::fs::write(
        &fasta,
        ">a\nGGGCGGCGACCTCGCGGGTTTTCGCTATTTATGAAAATTTTCCGG\n>b\nACGTNACGGTTTAAGGCG\n",
    )
    .unwrap();
    for (name, class) in [("dnabert6", "BertForMaskedLM"), ("nt6", "EsmForMaskedLM")] {
        let out = dir.path().join(format!("{name}-dnalm"));
        let text = ok(&[
            "convert",
            golden(name).to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert!(text.contains(class), "{text}");
        // Both the original directory and the converted one embed.
        for model in [golden(name), out.clone()] {
            let emb = dir.path().join(format!("{name}.npy"));
            let _ = std::fs::remove_file(&emb);
            ok(&[
                "embed",
                "-m",
                model.to_str().unwrap(),
                "-i",
                fasta.to_str().unwrap(),
                "-o",
                emb.to_str().unwrap(),
            ]);
            let bytes = std::fs::read(&emb).unwrap();
            let header = String::from_utf8_lossy(&bytes[..128]);
            assert!(header.contains("'shape': (2, 16)"), "{header}");
        }
    }
}

#[test]
fn bad_checkpoints_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // No config.json.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = dnalm(&["convert", empty.to_str().unwrap(), &out("o1")]);
    assert_one_line_error(&o, &["empty", "no config.json"]);

    // config.json edits of the Nucleotide Transformer fixture, and what the error must name.
    let config = std::fs::read_to_string(golden("nt6").join("config.json")).unwrap();
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        // An unsupported model_type.
        (
            "gpt",
            "\"esm\"",
            "\"gpt2\"",
            &["config.json", "model_type", "gpt2"],
        ),
        // An option dnalm cannot run exactly.
        (
            "esm1b",
            "\"emb_layer_norm_before\": false",
            "\"emb_layer_norm_before\": true",
            &["emb_layer_norm_before"],
        ),
        // Mis-shaped tensors: a feed-forward width the weights do not have.
        (
            "wide",
            "\"intermediate_size\": 32",
            "\"intermediate_size\": 48",
            &["model.safetensors", "intermediate.dense.weight", "shape"],
        ),
        // Missing tensors: one layer more than the weights hold.
        (
            "deep",
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 3",
            &["missing tensor esm.encoder.layer.2."],
        ),
    ];
    for (name, from, to, needles) in cases {
        let src = dir.path().join(name);
        copy_dir(&golden("nt6"), &src);
        assert!(config.contains(from), "{from}");
        std::fs::write(src.join("config.json"), config.replace(from, to)).unwrap();
        let o = dnalm(&[
            "convert",
            src.to_str().unwrap(),
            &out(&format!("{name}-out")),
        ]);
        assert_one_line_error(&o, needles);
    }

    // Weights only as a PyTorch pickle: the error says how to convert them.
    let pickle = dir.path().join("pickle");
    copy_dir(&golden("nt6"), &pickle);
    std::fs::rename(
        pickle.join("model.safetensors"),
        pickle.join("pytorch_model.bin"),
    )
    .unwrap();
    let o = dnalm(&["convert", pickle.to_str().unwrap(), &out("o6")]);
    assert_one_line_error(&o, &["pytorch_model.bin", "save_file"]);

    // A tokenizer whose vocabulary is larger than the embedding matrix.
    let big = dir.path().join("big");
    copy_dir(&golden("dnabert6"), &big);
    std::fs::remove_file(big.join("tokenizer.json")).unwrap();
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    for code in 0..1usize << 14 {
        vocab.push(
            (0..7)
                .map(|i| b"ACGT"[(code >> (2 * (6 - i))) & 3] as char)
                .collect(),
        );
    }
    std::fs::write(big.join("vocab.txt"), vocab.join("\n")).unwrap();
    let o = dnalm(&["convert", big.to_str().unwrap(), &out("o7")]);
    assert_one_line_error(&o, &["16389 tokens", "4101 rows"]);
}

/// The process umask, from /proc (Linux).
#[cfg(target_os = "linux")]
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).unwrap()
}

/// Issue 14, defect 13: outputs honour the umask (weights, tokenizer files and indexes used to be
/// 0600 and directories 0700 whatever the umask, while config.json was 0644).
#[cfg(target_os = "linux")]
#[test]
fn outputs_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mask = umask();
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("nt_v2");
    let src = root().join("crates/dnalm-eval/tests/golden/nt_v2/checkpoint");
    ok(&["convert", src.to_str().unwrap(), dst.to_str().unwrap()]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dst), 0o777 & !mask, "directory");
    for e in std::fs::read_dir(&dst).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o666 & !mask, "{}", p.display());
    }
    let fasta = out.path().join("g.fa");
    std::fs::copy(root().join("data/lambda_phage.fa"), &fasta).unwrap();
    ok(&[
        "fetch",
        fasta.to_str().unwrap(),
        "gi|9626243|ref|NC_001416.1|:1-10",
    ]);
    assert_eq!(mode(&out.path().join("g.fa.fai")), 0o666 & !mask, ".fai");
}
