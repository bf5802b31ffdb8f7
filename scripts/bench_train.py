"""PyTorch/transformers peer of crates/dnalm-train/benches/train_throughput.rs.

The same encoder as dnalm's (ESM-2 layout: pre-LayerNorm, rotary, GELU, tied LM head), built as
transformers' EsmForMaskedLM with the same shapes, fp32, the same thread count; a training step is
forward + masked-LM loss on 15% of positions + backward + AdamW, inference is a forward pass.
Prints one JSON line. Shapes come from the same BENCH_* environment variables; BENCH_DEVICE
(`cpu` or `cuda`) and BENCH_DTYPE (`fp32` or `bf16`: autocast with fp32 master weights, as
dnalm's `train.precision` would) pick where and how it runs (scripts/gpu_check.sh).
"""
import contextlib
import json
import os
import time

import torch
from transformers import EsmConfig, EsmForMaskedLM


def env(name, default):
    return int(os.environ.get(name, default))


def main():
    threads = env("BENCH_THREADS", os.cpu_count())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers, d, heads, ffn = env("BENCH_LAYERS", 4), env("BENCH_D", 256), env("BENCH_HEADS", 4), env("BENCH_FFN", 1024)
    seq, batch, vocab, steps = env("BENCH_SEQ", 512), env("BENCH_BATCH", 8), env("BENCH_VOCAB", 12), env("BENCH_STEPS", 5)
    config = EsmConfig(
        vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, max_position_embeddings=seq + 2, position_embedding_type="rotary",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, token_dropout=False,
        emb_layer_norm_before=False, pad_token_id=0, mask_token_id=4, tie_word_embeddings=True,
    )
    device = os.environ.get("BENCH_DEVICE", "cpu")
    dtype = os.environ.get("BENCH_DTYPE", "fp32")
    model = EsmForMaskedLM(config).to(device)
    ids = torch.randint(5, vocab, (batch, seq)).to(device)
    labels = torch.where(torch.rand(batch, seq, device=device) < 0.15, ids, torch.full_like(ids, -100))
    attention = torch.ones_like(ids)

    def autocast():
        if dtype == "bf16":
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for step in range(steps + 1):
        sync()
        t = time.perf_counter()
        with autocast():
            out = model(input_ids=ids, attention_mask=attention, labels=labels)
        out.loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        sync()
        if step > 0:
            times.append(time.perf_counter() - t)
    train = batch * seq / sorted(times)[len(times) // 2]
    model.eval()
    times = []
    with torch.inference_mode():
        for step in range(steps + 1):
            sync()
            t = time.perf_counter()
            with autocast():
                model.esm(input_ids=ids, attention_mask=attention)
            sync()
            if step > 0:
                times.append(time.perf_counter() - t)
    infer = batch * seq / sorted(times)[len(times) // 2]
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} + transformers (EsmForMaskedLM, {config._attn_implementation})",
        "device": device, "dtype": dtype, "threads": threads, "layers": layers, "d_model": d, "seq": seq, "batch": batch,
        "train_tokens_per_s": round(train, 1), "infer_tokens_per_s": round(infer, 1),
    }))


if __name__ == "__main__":
    main()
