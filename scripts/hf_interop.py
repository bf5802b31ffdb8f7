#!/usr/bin/env python3
"""Golden fixtures for dnalm's Hugging Face interop, made and checked by `transformers` itself.

    python scripts/hf_interop.py make  DIR   # tiny random checkpoints + the outputs transformers gives
    python scripts/hf_interop.py make-peft DIR  # a PEFT LoRA adapter on DIR/esm_rotary + PEFT's outputs
    python scripts/hf_interop.py make-peft-packed DIR  # a PEFT adapter on DNABERT-2's packed layers
    python scripts/hf_interop.py check DIR   # transformers loads dnalm's exports: same ids, same logits

`make` writes, for each family dnalm imports, a checkpoint directory as `save_pretrained` and the
tokenizer's `save_pretrained` write it, plus `expected.safetensors` (token ids from the stock
tokenizer, the ids fed to the model, attention mask, last hidden state, logits) and
`inputs.json` (the DNA sequences):

- dnabert6:    BertForMaskedLM, DNABERT-style 6-mer vocab.txt, BertTokenizer on space-separated
               overlapping 6-mers (DNABERT's input convention)
- nt6:         EsmForMaskedLM as Nucleotide Transformer v1: learned absolute positions counted from
               pad_token_id + 1, token_dropout, untied LM head, NT's vocabulary order (<unk> <pad>
               <mask> <cls>, 4,096 6-mers, A T C G N, then <eos> <bos> beyond the 4,105 embedded
               tokens), EsmTokenizer with eos_token = None; one input carries a <mask>
- esm_rotary:  EsmForMaskedLM as ESM-2 / dnalm's encoder: rotary positions, tied LM head
- llama:       LlamaForCausalLM as dnalm's decoder (ids given directly)

`check` reads dnalm-exported model directories under DIR/export/* (written by the Rust test
`write_export_fixtures`), loads each with the stock AutoModel class (no trust_remote_code) and its
tokenizer.json with AutoTokenizer, and compares with the ids and logits dnalm stored there.
`make-peft` writes esm_rotary_lora: a LoRA adapter that PEFT itself made on the esm_rotary
checkpoint (`get_peft_model`, r = 2, alpha = 6, on query, value and intermediate.dense, its B
factors redrawn so that the adapter changes the outputs), saved with `save_pretrained`
(base_model_name_or_path rewritten to the relative ../esm_rotary), with the PeftModel's hidden
states and logits on esm_rotary's inputs. `check` also loads each dnalm-written adapter under
DIR/export_peft/* (adapter_config.json + adapter_model.safetensors, on its dnalm-exported base)
with `peft.PeftModel.from_pretrained` and compares its logits with dnalm's; an adapter there with
merged.safetensors (on the DNABERT-2 / NT-v2 golden checkpoints, whose modelling code is custom
hub code) is loaded on the checkpoint's linear layers and PEFT's merged weights are compared.
`make-peft-packed` writes dnabert2_peft_lora (see make_peft_packed).
Every mode exits non-zero on any mismatch over 1e-4.
"""

import itertools
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TOLERANCE = 1e-4
SEED = 20261125
ROOT = Path(__file__).resolve().parent.parent


def lambda_sequences():
    """Fixed real inputs: slices of the bundled phage lambda genome, one with an N."""
    text = (ROOT / "data" / "lambda_phage.fa").read_text().splitlines()
    genome = "".join(line.strip() for line in text if not line.startswith(">"))
    a = genome[1000:1030]
    b = genome[5000:5017]
    b = b[:8] + "N" + b[9:]
    return [a, b]


def pad(rows, value):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def jitter(model, select, mean, sd):
    """Redraws the parameters whose name `select` accepts from N(mean, sd), so that biases,
    token types and norms are not zeros and ones, behind which a wrong mapping could hide."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if select(name):
                p.normal_(mean, sd)


def run(model, base, ids, mask):
    model.eval()
    with torch.no_grad():
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model(input_ids=ids, attention_mask=mask).logits
    return hidden.float().contiguous(), logits.float().contiguous()


def write(out, name, model, tokenizer, seqs, token_ids, model_ids, pad_id, base):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(d)
    ids, mask = pad(model_ids, pad_id)
    tok_ids, _ = pad(token_ids, pad_id)
    hidden, logits = run(model, base, ids, mask)
    save_file(
        {
            "token_ids": tok_ids.to(torch.int64).contiguous(),
            "input_ids": ids.contiguous(),
            "attention_mask": mask.contiguous(),
            "last_hidden_state": hidden,
            "logits": logits,
        },
        d / "expected.safetensors",
    )
    (d / "inputs.json").write_text(json.dumps({"sequences": seqs}, indent=1) + "\n")
    print(f"{name}: ids {list(ids.shape)}, hidden {list(hidden.shape)}, logits {list(logits.shape)}")


def make(out: Path):
    from transformers import (BertConfig, BertForMaskedLM, BertTokenizer, EsmConfig,
                              EsmForMaskedLM, EsmTokenizer, LlamaConfig, LlamaForCausalLM)

    out.mkdir(parents=True, exist_ok=True)
    seqs = lambda_sequences()
    tmp = out / "_vocab"
    tmp.mkdir(exist_ok=True)

    # DNABERT: [PAD] [UNK] [CLS] [SEP] [MASK] + 6-mers; input = space-separated 6-mers.
    torch.manual_seed(SEED)
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=6)]
    (tmp / "dnabert.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + kmers) + "\n")
    bert_tok = BertTokenizer(str(tmp / "dnabert.txt"), do_lower_case=False)
    bert = BertForMaskedLM(BertConfig(
        vocab_size=len(kmers) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=0, hidden_act="gelu",
        layer_norm_eps=1e-12))
    jitter(bert, lambda n: n.endswith("bias") or "token_type" in n, 0.0, 0.05)
    rows = [bert_tok(" ".join(s[i:i + 6] for i in range(len(s) - 5)))["input_ids"] for s in seqs]
    write(out, "dnabert6", bert, bert_tok, seqs, rows, rows, 0, bert.bert)
    # DNABERT's published checkpoints carry vocab.txt (transformers 5 saves tokenizer.json only).
    (out / "dnabert6" / "vocab.txt").write_text((tmp / "dnabert.txt").read_text())

    # Nucleotide Transformer v1.
    torch.manual_seed(SEED + 1)
    nt_kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    nt_vocab = ["<unk>", "<pad>", "<mask>", "<cls>"] + nt_kmers + ["A", "T", "C", "G", "N", "<eos>", "<bos>"]
    (tmp / "nt.txt").write_text("\n".join(nt_vocab) + "\n")
    nt_tok = EsmTokenizer(str(tmp / "nt.txt"), eos_token=None, model_max_length=1000)
    nt = EsmForMaskedLM(EsmConfig(
        vocab_size=4105, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=66, pad_token_id=1, mask_token_id=2,
        position_embedding_type="absolute", token_dropout=True, emb_layer_norm_before=False,
        tie_word_embeddings=False, layer_norm_eps=1e-12, hidden_act="gelu"))
    jitter(nt, lambda n: n.endswith("bias"), 0.0, 0.05)
    rows = [nt_tok(s)["input_ids"] for s in seqs]
    assert max(max(r) for r in rows) < 4105, rows
    masked = [list(r) for r in rows]
    masked[0][2] = nt_tok.mask_token_id  # exercises token dropout's rescaling
    write(out, "nt6", nt, nt_tok, seqs, rows, masked, 1, nt.esm)

    # ESM-2 layout (rotary, tied), the layout dnalm's encoder exports to.
    torch.manual_seed(SEED + 2)
    esm = EsmForMaskedLM(EsmConfig(
        vocab_size=4105, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=1, mask_token_id=2,
        position_embedding_type="rotary", token_dropout=False, emb_layer_norm_before=False,
        tie_word_embeddings=True, layer_norm_eps=1e-5, hidden_act="gelu"))
    jitter(esm, lambda n: n.endswith("bias"), 0.0, 0.05)
    write(out, "esm_rotary", esm, nt_tok, seqs, rows, rows, 1, esm.esm)

    # Llama, the layout dnalm's decoder exports to; ids directly (a 12-token DNA vocabulary).
    torch.manual_seed(SEED + 3)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=12, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64, rms_norm_eps=1e-6,
        rope_theta=10000.0, tie_word_embeddings=False, pad_token_id=0, bos_token_id=5,
        eos_token_id=6, hidden_act="silu"))
    jitter(llama, lambda n: "norm" in n, 1.0, 0.1)
    base = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
    rows = [[5] + [base[c] for c in s] + [6] for s in seqs]
    write(out, "llama", llama, None, seqs, rows, rows, 0, llama.model)

    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


def logit_gap(model, expected):
    """Largest |logit difference| at real positions between `model` and `expected`."""
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"],
                       attention_mask=expected["attention_mask"]).logits
    real = expected["attention_mask"].bool()
    return (logits[real] - expected["logits"][real]).abs().max().item()


def save_nonzero_adapter(peft, d: Path, base: str):
    """Draws the PeftModel's B factors non-zero (PEFT starts them at 0, which would test
    nothing), saves the adapter to d and points it at base (a path relative to d)."""
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)
    peft.save_pretrained(d)
    (d / "README.md").unlink(missing_ok=True)  # PEFT's blank model card
    config = json.loads((d / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (d / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def make_peft(out: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import EsmForMaskedLM

    base = out / "esm_rotary"
    model = EsmForMaskedLM.from_pretrained(base)
    torch.manual_seed(SEED + 4)
    peft = get_peft_model(model, LoraConfig(
        r=2, lora_alpha=6, target_modules=["query", "value", "intermediate.dense"],
        lora_dropout=0.0, bias="none"))
    d = out / "esm_rotary_lora"
    save_nonzero_adapter(peft, d, "../esm_rotary")
    expected = load_file(base / "expected.safetensors")
    ids, mask = expected["input_ids"], expected["attention_mask"]
    hidden, logits = run(peft, peft.base_model.model.esm, ids, mask)
    plain = expected["last_hidden_state"]
    moved = (hidden - plain)[mask.bool()].abs().max().item()
    assert moved > 1e-2, f"the adapter changes nothing ({moved})"
    save_file({"input_ids": ids, "attention_mask": mask, "last_hidden_state": hidden,
               "logits": logits}, d / "expected.safetensors")
    print(f"esm_rotary_lora: {len(peft.state_dict())} tensors, hidden moved by up to {moved:.3f}")


def make_peft_packed(out: Path):
    """dnabert2_peft_lora: a LoRA adapter PEFT itself made on the linear layers of the DNABERT-2
    golden checkpoint (Wqkv and gated_layers pack several of dnalm's weights; gated_layers gets
    its own rank and alpha by pattern), its B factors drawn non-zero, with PEFT's merged weights
    of the adapted layers (merged.safetensors), which dnalm must reproduce."""
    from peft import LoraConfig, get_peft_model

    base_dir = out.parent / "dnabert2" / "checkpoint"
    base = load_file(base_dir / "model.safetensors")
    torch.manual_seed(SEED + 5)
    peft = get_peft_model(linear_tree(base), LoraConfig(
        r=2, lora_alpha=6, target_modules=["Wqkv", "gated_layers", "wo"],
        rank_pattern={"gated_layers": 3}, alpha_pattern={"gated_layers": 5},
        lora_dropout=0.0, bias="none"))
    d = out / "dnabert2_peft_lora"
    save_nonzero_adapter(peft, d, "../../dnabert2/checkpoint")
    targets = {n + ".weight" for n, m in peft.named_modules() if hasattr(m, "lora_A")}
    merged = peft.merge_and_unload().state_dict()
    keep = {k.removeprefix("base_model.model."): v.contiguous() for k, v in merged.items()}
    keep = {k: v for k, v in keep.items() if any(t.endswith(k) for t in targets)}
    save_file(keep, d / "merged.safetensors")
    print(f"dnabert2_peft_lora: {len(targets)} adapted layers")


def linear_tree(weights):
    """A module tree with an nn.Linear at every 2-D `<path>.weight` of `weights`, loaded: the
    linear layers of a hub checkpoint whose modelling code is not at hand (DNABERT-2's and
    NT-v2's are custom code on the hub), which is all PEFT's LoRA touches."""
    import torch

    root = torch.nn.Module()
    for key, w in weights.items():
        if not key.endswith(".weight") or w.dim() != 2:
            continue
        path = key[: -len(".weight")].split(".")
        node = root
        for part in path[:-1]:
            if not hasattr(node, part):
                node.add_module(part, torch.nn.Module())
            node = getattr(node, part)
        bias = weights.get(f"{key[: -len('.weight')]}.bias")
        layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(w)
            if bias is not None:
                layer.bias.copy_(bias)
        node.add_module(path[-1], layer)
    return root


def check_peft_merge(d: Path):
    """A dnalm adapter on layers that pack several of dnalm's weights (DNABERT-2's Wqkv and
    gated_layers, NT-v2's gated intermediate.dense): PEFT loads it on the hub checkpoint's
    linear layers and its merge_and_unload gives dnalm's merged weights (merged.safetensors)."""
    from peft import PeftModel

    config = json.loads((d / "adapter_config.json").read_text())
    base = load_file((d / config["base_model_name_or_path"]).resolve() / "model.safetensors")
    model = PeftModel.from_pretrained(linear_tree(base), d)
    adapted = sum(1 for n, _ in model.named_parameters() if "lora_A" in n)
    ranks = {n: m.r["default"] for n, m in model.named_modules() if hasattr(m, "r") and "default" in getattr(m, "r", {})}
    merged = model.merge_and_unload().state_dict()
    want = load_file(d / "merged.safetensors")
    diff = max(float((merged[k] - v).abs().max()) for k, v in want.items())
    moved = sum(1 for k, v in want.items() if not base[k].equal(v))
    ok = diff <= 1e-6 and adapted == len(config["target_modules"]) == len(want) and moved == len(want)
    print(f"{'ok' if ok else 'FAIL'} {d.name}: PeftModel on the hub checkpoint's linear layers, "
          f"{adapted} adapted modules (ranks {sorted(set(ranks.values()))}), "
          f"max |merged weight difference| = {diff:.2e}")
    return not ok


def check_peft(root: Path):
    """dnalm's adapters load with PeftModel.from_pretrained on their exported base."""
    from peft import PeftModel
    from transformers import AutoModelForMaskedLM

    failed, dirs = 0, sorted(p for p in (root / "export_peft").iterdir() if p.is_dir())
    for d in dirs:
        if (d / "merged.safetensors").exists():
            failed += check_peft_merge(d)
            continue
        config = json.loads((d / "adapter_config.json").read_text())
        base = AutoModelForMaskedLM.from_pretrained((d / config["base_model_name_or_path"]).resolve())
        model = PeftModel.from_pretrained(base, d)
        diff = logit_gap(model, load_file(d / "expected.safetensors"))
        adapted = sum(1 for n, _ in model.named_parameters() if "lora_A" in n)
        ok = diff <= TOLERANCE and adapted == len(config["target_modules"])
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {d.name}: PeftModel on {type(base).__name__}, "
              f"{adapted} adapted modules, max |logit difference| = {diff:.2e}")
    print(f"peft-export: {len(dirs) - failed} passed, {failed} failed")
    return failed


def check(root: Path):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    failed = 0
    dirs = sorted(p for p in (root / "export").iterdir() if p.is_dir())
    if not dirs:
        sys.exit(f"no exported models under {root / 'export'}")
    for d in dirs:
        config = json.loads((d / "config.json").read_text())
        cls = AutoModelForCausalLM if config["model_type"] == "llama" else AutoModelForMaskedLM
        model = cls.from_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        expected = load_file(d / "expected.safetensors")
        seqs = json.loads((d / "inputs.json").read_text())["sequences"]
        ok = True
        for i, s in enumerate(seqs):
            got = tok(s)["input_ids"]
            want = [int(x) for x, m in zip(expected["input_ids"][i], expected["attention_mask"][i]) if m]
            if got != want:
                ok = False
                print(f"FAIL {d.name}: sequence {i}: tokenizer ids {got} != dnalm's {want}")
        diff = logit_gap(model, expected)
        ok = ok and diff <= TOLERANCE
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {d.name}: {type(model).__name__}, max |logit difference| = {diff:.2e}")
    print(f"hf-export: {len(dirs) - failed} passed, {failed} failed")
    failed += check_peft(root)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    modes = {"make": make, "make-peft": make_peft, "make-peft-packed": make_peft_packed,
             "check": check}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    modes[sys.argv[1]](Path(sys.argv[2]))
