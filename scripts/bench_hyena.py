"""PyTorch peer of crates/dnalm-train/benches/train_throughput.rs with BENCH_ARCH=hyena.

The same Hyena model as dnalm's (HyenaDNA layout: pre-LayerNorm blocks; the order-2 Hyena
operator: in_proj to 3d, causal width-3 depthwise convolution, implicit filter from a sine
network over positional features times an exponential decay window, FFT convolution with
torch.fft at size 2L, gating, out_proj; tanh-GELU MLP; final LayerNorm; LM head), written for
this bench from the operator's definition (HyenaDNA's reference code is not redistributed here;
its layout and math are what dnalm's golden test checks). fp32, the same thread count; a
training step is forward + cross-entropy on 15% of positions + backward + AdamW, inference is a
forward pass. Prints one JSON line; shapes from the same BENCH_* environment variables.
"""
import json
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F


def env(name, default):
    return int(os.environ.get(name, default))


class Filter(nn.Module):
    def __init__(self, d, max_len, order=64, emb_dim=5, inner=2, freq=10.0):
        super().__init__()
        bands = (emb_dim - 1) // 2
        t = torch.linspace(0, 1, max_len)[:, None]
        w = 2 * math.pi * torch.linspace(0, max_len - 1, max_len)[:, None] / max_len
        f = torch.linspace(1e-4, bands - 1, bands)[None]
        self.z = nn.Parameter(torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], -1))
        self.freq = nn.Parameter(freq * torch.ones(order))
        self.input = nn.Linear(emb_dim, order)
        self.inner = nn.ModuleList(nn.Linear(order, order) for _ in range(inner))
        self.output = nn.Linear(order, d, bias=False)
        self.bias = nn.Parameter(torch.randn(d))
        deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, d)
        self.register_buffer("window", torch.exp(-t * deltas.abs()) + 0.05)

    def forward(self, length):
        h = torch.sin(self.freq * self.input(self.z[:length]))
        for layer in self.inner:
            h = torch.sin(self.freq * layer(h))
        return (self.output(h) * self.window[:length]).transpose(0, 1)  # [d, L]


class Hyena(nn.Module):
    def __init__(self, d, max_len):
        super().__init__()
        self.d = d
        self.in_proj = nn.Linear(d, 3 * d)
        self.short = nn.Conv1d(3 * d, 3 * d, 3, padding=2, groups=3 * d)
        self.filter = Filter(d, max_len)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        length = x.shape[1]
        u = self.short(self.in_proj(x).transpose(1, 2))[..., :length]
        x0, x1, v = u.split(self.d, dim=1)
        v = v * x1
        k = self.filter(length)
        n = 2 * length
        y = torch.fft.irfft(torch.fft.rfft(v, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :length]
        v = y + v * self.filter.bias[:, None]
        return self.out_proj((v * x0).transpose(1, 2))


class Block(nn.Module):
    def __init__(self, d, ffn, max_len):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mixer = Hyena(d, max_len)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class HyenaLm(nn.Module):
    def __init__(self, vocab, d, layers, ffn, max_len):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, ffn, max_len) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def main():
    threads = env("BENCH_THREADS", os.cpu_count())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers, d, ffn = env("BENCH_LAYERS", 4), env("BENCH_D", 256), env("BENCH_FFN", 1024)
    seq, batch, vocab, steps = env("BENCH_SEQ", 512), env("BENCH_BATCH", 8), env("BENCH_VOCAB", 12), env("BENCH_STEPS", 5)
    model = HyenaLm(vocab, d, layers, ffn, seq)
    ids = torch.randint(5, vocab, (batch, seq))
    picked = torch.rand(batch, seq) < 0.15
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for step in range(steps + 1):
        t = time.perf_counter()
        hidden = model(ids)[picked]
        loss = F.cross_entropy(hidden @ model.embed.weight.T, ids[picked])
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - t)
    train = batch * seq / sorted(times)[len(times) // 2]
    model.eval()
    times = []
    with torch.inference_mode():
        for step in range(steps + 1):
            t = time.perf_counter()
            model(ids)
            if step > 0:
                times.append(time.perf_counter() - t)
    infer = batch * seq / sorted(times)[len(times) // 2]
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} (Hyena, this bench's implementation)",
        "arch": "Hyena", "parameters": sum(p.numel() for p in model.parameters()),
        "device": "cpu", "threads": threads, "layers": layers, "d_model": d, "seq": seq, "batch": batch,
        "train_tokens_per_s": round(train, 1), "infer_tokens_per_s": round(infer, 1),
    }))


if __name__ == "__main__":
    main()
