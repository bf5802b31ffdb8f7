"""dnalm from Python, against the CLI on the same inputs (scripts/test.sh builds the extension
with `maturin develop` and the CLI with `cargo test` before running these)."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dnalm

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "crates/dnalm-seq/tests/suites"
GUE_TASK = SUITES / "gue/GUE/tf/0"


def cli(*args):
    """Runs the dnalm binary the test command built; returns stdout."""
    binary = os.environ.get("DNALM_BIN", str(ROOT / "target/debug/dnalm"))
    done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A 2-step pretrained 2-block encoder (the CLI tests' tiny model)."""
    run = tmp_path_factory.mktemp("run")
    settings = [
        f'data.fasta="{ROOT / "data/lambda_phage.fa"}"',
        "data.context=64",
        "data.split_block=2000",
        "data.valid_fraction=0.1",
        "model.n_layers=2",
        "model.d_model=16",
        "model.n_heads=2",
        "model.d_ffn=32",
        "train.batch_size=4",
        "train.eval_batches=1",
        "train.eval_every=2",
        "train.save_every=2",
        "train.steps=2",
    ]
    args = ["pretrain", "-c", ROOT / "configs/mlm.toml", "-o", run / "mlm"]
    for s in settings:
        args += ["--set", s]
    cli(*args)
    return run / "mlm/checkpoint-000002"


@pytest.fixture(scope="session")
def model(checkpoint):
    return dnalm.Model.load(str(checkpoint))


def test_tokenizer_ids_equal_the_clis(tmp_path):
    out = tmp_path / "ids.jsonl"
    cli("tokenize", GUE_TASK / "train.csv", "-t", "kmer:6", "--out", out)
    expected = [json.loads(line)["ids"] for line in out.read_text().splitlines()]
    task = dnalm.Task.load(f"gue:{GUE_TASK}")
    tok = dnalm.Tokenizer.load("kmer:6")
    got = tok.encode(task.split("train")["sequences"])
    assert [e["ids"].tolist() for e in got] == expected
    # Offsets are base spans; [CLS] and [SEP] have none.
    first = got[0]
    assert first["offsets"].shape == (len(first["ids"]), 2)
    assert first["offsets"][1].tolist() == [0, 6]
    assert first["special_tokens_mask"][0] == 1


def test_saved_tokenizer_ids_equal_hugging_faces():
    tokenizers = pytest.importorskip("tokenizers")
    path = ROOT / "data/tokenizers/ecoli_bpe4096"
    hf = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    ours = dnalm.Tokenizer.load(str(path))
    seqs = dnalm.Task.load(f"gue:{GUE_TASK}").split("test")["sequences"]
    got = [e["ids"].tolist() for e in ours.encode(seqs)]
    assert got == [e.ids for e in hf.encode_batch(seqs)]


def test_embeddings_equal_dnalm_embed(model, checkpoint, tmp_path):
    cli("embed", "-m", checkpoint, "--task", f"gue:{GUE_TASK}", "-o", tmp_path)
    task = dnalm.Task.load(f"gue:{GUE_TASK}")
    for split in ["train", "valid", "test"]:
        expected = np.load(tmp_path / f"{split}.npy")
        got = model.embed(task.split(split)["sequences"])
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # Per-token output: one array per sequence; several layers are concatenated.
    per_token = model.embed(["ACGTACGTAC" * 3, "ACGT" * 20], per="token", layers=[0, -1])
    assert [a.shape[1] for a in per_token] == [2 * model.width] * 2
    assert per_token[1].shape[0] > per_token[0].shape[0]


def test_a_lora_adapter_loads_on_its_base(checkpoint, tmp_path):
    """`Model.load` opens a `finetune --lora` directory (adapter and head only) as the base model
    with the adapters attached, as `dnalm embed` does."""
    adapter = tmp_path / "lora"
    cli("finetune", "-m", checkpoint, "-t", f"gue:{GUE_TASK}", "-o", adapter, "--epochs", "1",
        "--head", "random", "--lr", "1e-2", "--lora", "r=2,alpha=4,targets=q,v,ffn")
    assert (adapter / "adapter_config.json").is_file()
    assert not (adapter / "model.safetensors").exists()
    cli("embed", "-m", adapter, "--task", f"gue:{GUE_TASK}", "-o", tmp_path / "emb")
    seqs = dnalm.Task.load(f"gue:{GUE_TASK}").split("test")["sequences"]
    got = dnalm.Model.load(str(adapter)).embed(seqs)
    np.testing.assert_allclose(got, np.load(tmp_path / "emb/test.npy"), rtol=0, atol=1e-6)


def test_finetune_equals_dnalm_finetune(checkpoint, tmp_path):
    """`dnalm.finetune` runs what `dnalm finetune` runs (LoRA here) and saves the same adapter."""
    flags = dict(epochs=1, head="random", lr="1e-2", lora="r=2,alpha=4,targets=q,v")
    cli("finetune", "-m", checkpoint, "-t", f"gue:{GUE_TASK}", "-o", tmp_path / "cli",
        "--epochs", "1", "--head", "random", "--lr", "1e-2", "--lora", flags["lora"])
    report = dnalm.finetune(checkpoint, f"gue:{GUE_TASK}", tmp_path / "py", **flags)
    from safetensors.numpy import load_file

    want = load_file(tmp_path / "cli/adapter.safetensors")
    got = load_file(tmp_path / "py/adapter.safetensors")
    assert sorted(got) == sorted(want) and len(got) == 8
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5, err_msg=name)
    assert report["adapter"]["lora"]["rank"] == 2
    assert report["summary"]["mcc"]["n"] == 1
    # Bad input is a ValueError with the CLI's message.
    with pytest.raises(ValueError, match="lora"):
        dnalm.finetune(checkpoint, f"gue:{GUE_TASK}", tmp_path / "bad", lora="r=2,targets=nope")
    with pytest.raises(ValueError, match="epoch: not a fine-tuning setting"):
        dnalm.finetune(checkpoint, f"gue:{GUE_TASK}", tmp_path / "bad", epoch=1)
    with pytest.raises(TypeError, match="max_steps: expected a count"):
        dnalm.finetune(checkpoint, f"gue:{GUE_TASK}", tmp_path / "bad", max_steps="many")


def test_multitask_equals_dnalm_multitask(checkpoint, tmp_path):
    """`dnalm.multitask` trains and compares what `dnalm multitask` does (same test metrics)."""
    tasks = [f"gue:{GUE_TASK}", f"gue:{SUITES / 'gue/GUE/prom/prom_300_all'}"]
    cli("multitask", "-m", checkpoint, "--tasks", ",".join(tasks), "-o", tmp_path / "cli",
        "--max-steps", "4", "--seeds", "1", "--head", "random", "--lr", "1e-2")
    want = json.loads((tmp_path / "cli/report.json").read_text())
    got = dnalm.multitask(checkpoint, tasks, tmp_path / "py", max_steps=4, seeds=1,
                          head="random", lr="1e-2")
    assert got["plan"] is None
    report = got["report"]
    assert report["groups"] == want["groups"] and len(report["groups"][0]) == 2
    for g, w in zip(report["tasks"], want["tasks"]):
        assert g["task"] == w["task"]
        for side in ("grouped", "single"):
            for metric, value in w[side]["runs"][0].items():
                assert abs(g[side]["runs"][0][metric] - value) < 1e-5, (g["task"], side, metric)
    assert (tmp_path / "py/models" / report["tasks"][0]["task"] / "head.safetensors").is_file()
    with pytest.raises(ValueError, match="groups"):
        dnalm.multitask(checkpoint, tasks, groups="nope+other")


def test_probe_equals_dnalm_probe(model, checkpoint, tmp_path):
    cli("embed", "-m", checkpoint, "--task", f"gue:{GUE_TASK}", "-o", tmp_path / "emb")
    cli(
        "probe", "-t", f"gue:{GUE_TASK}", "--embeddings", tmp_path / "emb",
        "--probes", "linear", "--folds", "2", "-o", tmp_path / "probe.json",
    )
    report = json.loads((tmp_path / "probe.json").read_text())
    expected = report[0] if isinstance(report, list) else report
    task = dnalm.Task.load(f"gue:{GUE_TASK}")
    splits = []
    for name in ["train", "valid", "test"]:
        s = task.split(name)
        splits.append((np.load(tmp_path / "emb" / f"{name}.npy"), s["labels"]))
    got = dnalm.probe(*splits, kind="linear", folds=2)
    assert got["chosen"] == expected_field(expected, "chosen")
    mcc = expected_field(expected, "summary")["mcc"]
    assert got["metrics"]["mcc"][0] == pytest.approx(mcc["mean"], abs=1e-12)


def expected_field(report, name):
    """A field of the CLI's probe report (one report per probe kind)."""
    if name in report:
        return report[name]
    return next(iter(report.values()))[name]


def test_logme_equals_the_reference_algorithm():
    spec = importlib.util.spec_from_file_location("ref", ROOT / "scripts/logme_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    labels = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(np.int64)
    assert dnalm.logme(x, labels) == pytest.approx(ref.logme_fixed_point(x, labels, False), rel=1e-6)
    values = x[:, 1].astype(np.float64) + 0.1 * rng.normal(size=200)
    assert dnalm.logme(x, values) == pytest.approx(
        ref.logme_fixed_point(x, values.reshape(-1, 1), True), rel=1e-6
    )
    assert np.isfinite(dnalm.h_score(x, labels))


def test_tasks_fasta_and_scores():
    task = dnalm.Task.load(f"nt:{SUITES / 'nt/promoter_all'}")
    assert task.name == "promoter_all" and task.num_classes == 2
    assert [len(task.split(s)["ids"]) for s in ["train", "valid", "test"]] == [58, 6, 16]
    assert any("carved" in n for n in task.notes)
    gb = dnalm.Task.load(f"genomic-benchmarks:{SUITES / 'genomic_benchmarks/demo_coding'}")
    assert gb.label_names == ["negative", "positive"]
    records = list(dnalm.read_fasta(ROOT / "data/lambda_phage.fa"))
    assert len(records) == 1 and len(records[0][1]) == 48502


def test_a_multi_label_task_and_its_probe(model, tmp_path):
    task_dir = tmp_path / "cds"
    cli(
        "make-task", "multi-label", ROOT / "data/ecoli_MG1655.fa.gz",
        "-a", ROOT / "data/ecoli_MG1655.prodigal.gff3.gz",
        "--length", "100", "--rows", "60,20,30", "--stranded", "-o", task_dir,
    )
    task = dnalm.Task.load(str(task_dir))
    assert task.multi_label and task.num_classes is None
    assert task.label_names == ["CDS(+)", "CDS(-)"]
    splits = []
    for name in ["train", "valid", "test"]:
        s = task.split(name)
        assert s["labels"].dtype == bool and s["labels"].shape == (len(s["ids"]), 2)
        splits.append((model.embed(s["sequences"]), s["labels"]))
    got = dnalm.probe(*splits, kind="linear", folds=2)
    for name in ["auroc", "auprc", "mcc", "auroc/0", "auprc/1"]:
        assert name in got["metrics"], got["metrics"]
    assert np.isfinite(dnalm.logme(splits[0][0], splits[0][1]))
    with pytest.raises(ValueError, match="only 0/1"):
        dnalm.probe(*[(x, y.astype(np.int64) * 2) for x, y in splits])


def test_a_per_base_task_embedded_base_by_base(model, tmp_path):
    task_dir = tmp_path / "segments"
    cli(
        "make-task", "segmentation", ROOT / "data/ecoli_MG1655.fa.gz",
        ROOT / "data/ecoli_MG1655.prodigal.gff3.gz", "--classes", "CDS", "--stranded",
        "--length", "60", "--rows", "30,10,20", "-o", task_dir,
    )
    task = dnalm.Task.load(str(task_dir))
    assert task.per_base and not task.multi_label and task.num_classes == 3
    assert task.label_names == ["other", "CDS(+)", "CDS(-)"]
    splits = []
    for name in ["train", "valid", "test"]:
        s = task.split(name)
        assert all(l.dtype == np.uint8 and len(l) == len(q) for l, q in zip(s["labels"], s["sequences"]))
        vectors = model.embed(s["sequences"], per="base")
        assert [v.shape[0] for v in vectors] == [len(q) for q in s["sequences"]]
        # Every base is a row: a linear probe on per-base embeddings.
        splits.append((np.concatenate(vectors), np.concatenate(s["labels"]).astype(np.int64)))
    got = dnalm.probe(*splits, kind="linear", folds=2, num_classes=3)
    assert 0.0 <= got["metrics"]["accuracy"][0] <= 1.0 and "mcc" in got["metrics"]


def test_likelihoods_and_logits(model):
    seqs = ["ACGTACGTACGTACGTACGT", "TTTTTTTTTTGGGGGGGGGG"]
    scores = model.score_likelihood(seqs)
    assert scores.shape == (2,) and np.all(scores < 0) and np.all(np.isfinite(scores))
    logits = model.logits(seqs)
    tokens = model.tokenizer.encode(seqs)
    assert [l.shape for l in logits] == [(len(t["ids"]), model.tokenizer.vocab_size) for t in tokens]
    with pytest.raises(ValueError, match="do not fit the model's window"):
        model.logits(["ACGT" * 100])


def test_variant_scores_equal_dnalm_score_variants(model, checkpoint, tmp_path):
    name, genome = next(dnalm.read_fasta(ROOT / "data/lambda_phage.fa"))
    vcf = tmp_path / "v.vcf"
    rows = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i, pos in enumerate([500, 1200, 30000]):
        ref = genome[pos - 1]
        alt = "A" if ref != "A" else "C"
        rows.append(f"{name}\t{pos}\tv{i}\t{ref}\t{alt},<DEL>\t.\t.\t.")
    vcf.write_text("\n".join(rows) + "\n")
    cli("score", "variants", "-m", checkpoint, "--vcf", vcf, "--reference",
        ROOT / "data/lambda_phage.fa", "--flank", 32, "-o", tmp_path / "out.vcf",
        "--tsv", tmp_path / "out.tsv")
    expected = [line.split("\t") for line in (tmp_path / "out.tsv").read_text().splitlines()[1:]]
    got = model.score_variants(vcf, ROOT / "data/lambda_phage.fa", flank=32)
    assert len(got) == 6
    scored = [g for g in got if g["llr"] is not None]
    assert [g["alt"] for g in got if g["llr"] is None] == ["<DEL>"] * 3
    # The CLI's TSV lists the scored ALTs only.
    assert [(g["id"], g["alt"]) for g in scored] == [(e[2], e[4]) for e in expected]
    for g, e in zip(scored, expected):
        assert g["llr"] == pytest.approx(float(e[5]), abs=1e-4)
        assert g["method"] == e[6]


def read_safetensors(path):
    """The tensors of a safetensors file (numpy only: 8-byte header length, JSON, raw data)."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=np.float32).reshape(t["shape"])
    return out


@pytest.mark.parametrize("family", ["nt_v2", "dnabert2"])
def test_hub_checkpoints_give_their_reference_codes_ids_and_logits(family):
    """The golden fixtures of the hub families (tiny random weights, outputs of each family's
    own code; see their README): Model.load reads the hub layout, and ids and logits match."""
    golden = ROOT / "crates/dnalm-eval/tests/golden" / family
    inputs = json.loads((golden / "inputs.json").read_text())
    expected = read_safetensors(golden / "expected.safetensors")
    model = dnalm.Model.load(str(golden / "checkpoint"))
    seqs = [s["sequence"] for s in inputs["sequences"]]
    encoded = model.tokenizer.encode(seqs)
    for s, e, logits in zip(inputs["sequences"], encoded, model.logits(seqs)):
        assert e["ids"].tolist() == s["input_ids"], s["name"]
        np.testing.assert_allclose(logits, expected[f"{s['name']}.logits"], rtol=0, atol=1e-4)


def test_bad_inputs_raise_with_the_clis_messages(model, tmp_path):
    with pytest.raises(FileNotFoundError):
        dnalm.Model.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="device 'tpu': unknown device"):
        dnalm.Model.load(str(tmp_path / "missing"), device="tpu")
    with pytest.raises(ValueError, match="rebuild with --features vulkan"):
        dnalm.Model.load(str(tmp_path / "missing"), device="vulkan")
    with pytest.raises(ValueError, match="sequence 1: invalid base '-' at position 3"):
        model.embed(["ACGT", "AC-T"])
    with pytest.raises(ValueError, match="'median' is not mean, cls, max or last"):
        model.embed(["ACGT"], pool="median")
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        model.embed(["ACGT"], layers=[7])
    with pytest.raises(ValueError, match=r"not a gue task: train.csv is missing \(expected <task>/{train,dev,test}.csv"):
        dnalm.Task.load(f"gue:{SUITES / 'nt/promoter_all'}")
    with pytest.raises(FileNotFoundError):
        dnalm.read_fasta(tmp_path / "none.fa")
    with pytest.raises(TypeError, match="features: expected a numpy array"):
        dnalm.logme([[1.0, 2.0]], [0])
    with pytest.raises(TypeError, match="train: expected a"):
        dnalm.probe([1], None, None)
    with pytest.raises(ValueError, match="split 'dev2' is not train, valid or test"):
        dnalm.Task.load(f"gue:{GUE_TASK}").split("dev2")
