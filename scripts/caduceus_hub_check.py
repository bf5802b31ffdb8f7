"""Loads a dnalm-exported Caduceus directory with Caduceus' own modeling code and compares its
outputs with the golden fixture's (a check run by hand, not in CI: the reference code is not
redistributed here and cannot be downloaded at test time).

    dnalm convert crates/dnalm-eval/tests/golden/caduceus/checkpoint /tmp/cad_export
    .venv-torch/bin/pip install --target /tmp/cad_deps einops
    PYTHONPATH=/tmp/cad_deps .venv-torch/bin/python scripts/caduceus_hub_check.py \
        --caduceus CADUCEUS_CHECKOUT --mamba MAMBA_CHECKOUT /tmp/cad_export \
        crates/dnalm-eval/tests/golden/caduceus

CADUCEUS_CHECKOUT is a checkout of github.com/kuleshov-group/caduceus (its `caduceus/` package,
the files the hub repositories ship), MAMBA_CHECKOUT one of github.com/state-spaces/mamba at
v1.2.0.post1 (the version Caduceus pins). Mamba's CUDA kernels are not available on a CPU; as
for the golden fixture, its kernel entry points are rebound to the pure-PyTorch references in the
same files, the absent `selective_scan_cuda` extension gets an empty stand-in, and the Triton
norms a stand-in with the same semantics (residual added first; `prenorm` returns it too).
"""
import argparse
import importlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

NORMS = '''
import torch
from torch import nn


def rms_norm_fn(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6, **_):
    if residual is not None:
        x = x + residual
    out = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps) * weight).to(x.dtype)
    if bias is not None:
        out = out + bias
    return (out, x) if prenorm else out


def layer_norm_fn(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6, **_):
    if residual is not None:
        x = x + residual
    out = torch.nn.functional.layer_norm(x.float(), (x.shape[-1],), weight, bias, eps).to(x.dtype)
    return (out, x) if prenorm else out


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        return rms_norm_fn(x, self.weight, self.bias, residual, prenorm, residual_in_fp32, self.eps)
'''


def shim(caduceus: Path, mamba: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="caduceus_hub_check_"))
    (root / "selective_scan_cuda.py").write_text("# stand-in: never called\n")
    for sub in ["mamba_ssm", "mamba_ssm/modules", "mamba_ssm/ops", "mamba_ssm/ops/triton"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "__init__.py").write_text("")
    shutil.copy(mamba / "mamba_ssm/modules/mamba_simple.py", root / "mamba_ssm/modules/")
    shutil.copy(mamba / "mamba_ssm/ops/selective_scan_interface.py", root / "mamba_ssm/ops/")
    (root / "mamba_ssm/ops/triton/layernorm.py").write_text(NORMS)
    shutil.copytree(caduceus / "caduceus", root / "caduceus")
    return root


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--caduceus", type=Path, required=True)
    p.add_argument("--mamba", type=Path, required=True)
    p.add_argument("export", type=Path)
    p.add_argument("golden", type=Path)
    a = p.parse_args()
    sys.path.insert(0, str(shim(a.caduceus, a.mamba)))
    ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    ms = importlib.import_module("mamba_ssm.modules.mamba_simple")
    ssi.selective_scan_fn = ms.selective_scan_fn = ssi.selective_scan_ref
    ms.mamba_inner_fn = ssi.mamba_inner_ref
    config_cls = importlib.import_module("caduceus.configuration_caduceus").CaduceusConfig
    model_cls = importlib.import_module("caduceus.modeling_caduceus").CaduceusForMaskedLM
    # transformers 5 calls tie_weights(recompute_mapping=...); the hub code's takes no argument.
    tie = model_cls.tie_weights
    model_cls.tie_weights = lambda self, *args, **kwargs: tie(self)
    cfg = json.loads((a.export / "config.json").read_text())
    skip = {"dnalm", "architectures", "auto_map", "model_type", "torch_dtype"}
    model = model_cls(config_cls(**{k: v for k, v in cfg.items() if k not in skip})).eval()
    loaded = model.load_state_dict(load_file(a.export / "model.safetensors"), strict=False)
    print("not in the file (tied to another tensor, or buffers built from config.json):")
    for k in loaded.missing_keys:
        print("   ", k)
    assert not loaded.unexpected_keys, loaded.unexpected_keys
    inputs = json.loads((a.golden / "inputs.json").read_text())
    expected = load_file(a.golden / "expected.safetensors")
    worst = 0.0
    with torch.no_grad():
        for s in inputs["sequences"]:
            ids = torch.tensor([s["input_ids"]])
            logits = model(ids).logits[0]
            hidden = model.caduceus(ids).last_hidden_state[0]
            dl = (logits - expected[s["name"] + ".logits"]).abs().max().item()
            dh = (hidden - expected[s["name"] + ".last_hidden_state"]).abs().max().item()
            print(f"{s['name']}: max |logit diff| {dl:.1e}, max |hidden diff| {dh:.1e}")
            worst = max(worst, dl, dh)
    print(f"worst {worst:.1e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
