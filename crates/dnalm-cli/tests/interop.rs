//! `dnalm convert` and `--model DIR` on Hugging Face checkpoints (issue 5), on the golden
//! fixtures that `scripts/hf_interop.py` made with `transformers`, plus the bad inputs the issue
//! names: no config.json, an unsupported model_type, missing or mis-shaped tensors, a tokenizer
//! larger than the embedding.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_one_line_error, dnalm, root, stderr};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    root().join("crates/dnalm-eval/tests/golden/hf").join(name)
}

fn ok(args: &[&str]) -> String {
    let out = dnalm(args);
    assert!(
        out.status.success(),
        "dnalm {}: {}",
        args.join(" "),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

    // An unsupported model_type.
    let gpt = dir.path().join("gpt");
    copy_dir(&golden("nt6"), &gpt);
    let config = std::fs::read_to_string(gpt.join("config.json")).unwrap();
    std::fs::write(
        gpt.join("config.json"),
        config.replace("\"esm\"", "\"gpt2\""),
    )
    .unwrap();
    let o = dnalm(&["convert", gpt.to_str().unwrap(), &out("o2")]);
    assert_one_line_error(&o, &["config.json", "model_type", "gpt2"]);

    // An option dnalm cannot run exactly.
    let esm1b = dir.path().join("esm1b");
    copy_dir(&golden("nt6"), &esm1b);
    std::fs::write(
        esm1b.join("config.json"),
        config.replace(
            "\"emb_layer_norm_before\": false",
            "\"emb_layer_norm_before\": true",
        ),
    )
    .unwrap();
    let o = dnalm(&["convert", esm1b.to_str().unwrap(), &out("o3")]);
    assert_one_line_error(&o, &["emb_layer_norm_before"]);

    // Mis-shaped tensors: the config says 3 layers' worth of width the weights do not have.
    let wide = dir.path().join("wide");
    copy_dir(&golden("nt6"), &wide);
    std::fs::write(
        wide.join("config.json"),
        config.replace("\"intermediate_size\": 32", "\"intermediate_size\": 48"),
    )
    .unwrap();
    let o = dnalm(&["convert", wide.to_str().unwrap(), &out("o4")]);
    assert_one_line_error(
        &o,
        &["model.safetensors", "intermediate.dense.weight", "shape"],
    );

    // Missing tensors: one layer more than the weights hold.
    let deep = dir.path().join("deep");
    copy_dir(&golden("nt6"), &deep);
    std::fs::write(
        deep.join("config.json"),
        config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .unwrap();
    let o = dnalm(&["convert", deep.to_str().unwrap(), &out("o5")]);
    assert_one_line_error(&o, &["missing tensor esm.encoder.layer.2."]);

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
