"""PyTorch peer of crates/dnalm-train/benches/train_throughput.rs with BENCH_ARCH=caduceus.

The same Caduceus model as dnalm's, written for this bench from the model's definition (the
Caduceus and Mamba reference code is not redistributed here; its layout and math are what
dnalm's golden test checks): RCPS embedding [emb(x), flip_C(emb(comp(x)))] (BENCH_RC=1, the
default) or a plain one; blocks x + BiMamba(RMSNorm(x)) with the stream's halves swapped first
(the hub's fused add-and-norm), the mixer run on both halves in one batch; Mamba = in_proj to
x and z, causal depthwise conv (width 4) + SiLU, x_proj to (dt, B, C), softplus(dt_proj(dt)),
selective scan, gate SiLU(z), out_proj; the reverse scan shares in/out projections. The
selective scan is computed as Mamba's own CPU path computes it (`selective_scan_ref`: the
decays and inputs of every position and state materialised, then a Python loop over positions;
the CUDA kernel does not run on a CPU). fp32, the same thread count; a training step is forward
+ cross-entropy on 15% of positions + backward + AdamW, inference is a forward pass. Prints one
JSON line; shapes from the same BENCH_* environment variables.
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


class RmsNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x, weight=None):
        w = self.weight if weight is None else weight
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w


SCAN = os.environ.get("BENCH_SCAN", "reference")


def selective_scan(u, delta, a, b, c, d):
    """u, delta: [B, D, L]; a: [D, N]; b, c: [B, N, L]; d: [D].

    BENCH_SCAN=reference (default): as Mamba's `selective_scan_ref` computes it, indexing the
    materialised decays position by position (`delta_a[:, :, i]`); autograd then writes a
    full-size gradient per position, so its backward pass grows with the square of the length.
    BENCH_SCAN=unbind: the same loop over views from one `unbind`, whose backward is one stack:
    a faster PyTorch scan than the reference's, measured beside it.
    """
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, a))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, b, u)
    x = a.new_zeros((u.shape[0], a.shape[0], a.shape[1]))
    ys = []
    if SCAN == "unbind":
        steps = zip(delta_a.unbind(2), delta_b_u.unbind(2), c.unbind(2))
    else:
        steps = ((delta_a[:, :, i], delta_b_u[:, :, i], c[:, :, i]) for i in range(u.shape[2]))
    for da, dbu, ci in steps:
        x = da * x + dbu
        ys.append(torch.einsum("bdn,bn->bd", x, ci))
    return torch.stack(ys, dim=2) + u * d[None, :, None]


class Ssm(nn.Module):
    def __init__(self, inner, state, rank, d_conv=4):
        super().__init__()
        self.conv = nn.Conv1d(inner, inner, d_conv, padding=d_conv - 1, groups=inner)
        self.x_proj = nn.Linear(inner, rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(rank, inner)
        self.a_log = nn.Parameter(torch.log(torch.arange(1, state + 1).float()).repeat(inner, 1))
        self.d = nn.Parameter(torch.ones(inner))
        self.rank, self.state = rank, state

    def forward(self, x, z):  # [B, L, inner] each
        length = x.shape[1]
        x = F.silu(self.conv(x.transpose(1, 2))[..., :length])  # [B, inner, L]
        dt, b, c = self.x_proj(x.transpose(1, 2)).split([self.rank, self.state, self.state], -1)
        delta = F.softplus(self.dt_proj(dt)).transpose(1, 2)
        y = selective_scan(x, delta, -torch.exp(self.a_log), b.transpose(1, 2), c.transpose(1, 2), self.d)
        return y.transpose(1, 2) * F.silu(z)


class BiMamba(nn.Module):
    def __init__(self, d, state, expand=2):
        super().__init__()
        inner, rank = expand * d, math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * inner, bias=False)
        self.fwd, self.rev = Ssm(inner, state, rank), Ssm(inner, state, rank)
        self.out_proj = nn.Linear(inner, d, bias=False)

    def forward(self, h):
        x, z = self.in_proj(h).chunk(2, dim=-1)
        y = self.fwd(x, z) + self.rev(x.flip(1), z.flip(1)).flip(1)
        return self.out_proj(y)


class CaduceusLm(nn.Module):
    def __init__(self, vocab, d, layers, state, rc):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.norms = nn.ModuleList(RmsNorm(d) for _ in range(layers))
        self.mixers = nn.ModuleList(BiMamba(d, state) for _ in range(layers))
        self.norm_f = RmsNorm(d)
        self.rc, self.d = rc, d
        comp = list(range(vocab))
        for i, j in [(7, 10), (8, 9)]:
            if j < vocab:
                comp[i], comp[j] = j, i
        self.register_buffer("comp", torch.tensor(comp))

    def norm(self, norm, x):
        if not self.rc:
            return norm(x)
        a, b = x.split(self.d, -1)
        return torch.cat([norm(a), norm(b, norm.weight.flip(0))], -1)

    def forward(self, ids):
        x = self.embed(ids)
        if self.rc:
            x = torch.cat([x, self.embed(self.comp[ids]).flip(-1)], -1)
        rows = ids.shape[0]
        for norm, mixer in zip(self.norms, self.mixers):
            if self.rc:
                a, b = x.split(self.d, -1)
                x = torch.cat([b, a], -1)
                h = self.norm(norm, x)
                a, b = h.split(self.d, -1)
                out = mixer(torch.cat([a, b.flip(1, 2)], 0))
                x = x + torch.cat([out[:rows], out[rows:].flip(1, 2)], -1)
            else:
                x = x + mixer(norm(x))
        return self.norm(self.norm_f, x)

    def logits(self, h):
        if not self.rc:
            return h @ self.embed.weight.T
        a, b = h.split(self.d, -1)
        return a @ self.embed.weight.T + b.flip(-1) @ self.embed.weight[self.comp].T


def main():
    threads = env("BENCH_THREADS", os.cpu_count())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers, d, state = env("BENCH_LAYERS", 4), env("BENCH_D", 256), env("BENCH_STATE", 16)
    seq, batch, vocab, steps = env("BENCH_SEQ", 512), env("BENCH_BATCH", 8), env("BENCH_VOCAB", 12), env("BENCH_STEPS", 5)
    rc = env("BENCH_RC", 1) == 1
    model = CaduceusLm(vocab, d, layers, state, rc)
    ids = torch.randint(5, vocab, (batch, seq))
    picked = torch.rand(batch, seq) < 0.15
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for step in range(steps + 1):
        t = time.perf_counter()
        hidden = model(ids)[picked]
        loss = F.cross_entropy(model.logits(hidden), ids[picked])
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
        "impl": f"pytorch {torch.__version__} (Caduceus, scan: {SCAN})",
        "arch": "Caduceus", "parameters": sum(p.numel() for p in model.parameters()),
        "device": "cpu", "threads": threads, "layers": layers, "d_model": d, "seq": seq, "batch": batch,
        "train_tokens_per_s": round(train, 1), "infer_tokens_per_s": round(infer, 1),
    }))


if __name__ == "__main__":
    main()
