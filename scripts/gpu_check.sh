#!/usr/bin/env bash
# The GPU check: dnalm on a GPU against the CPU (equivalence) and against PyTorch (speed).
#
#   scripts/gpu_check.sh build   # here, with cargo: builds the GPU binaries into .devbin/
#   scripts/gpu_check.sh run     # on the GPU machine: equivalence test, then one speed table
#   scripts/gpu_check.sh         # both, where cargo and the GPU are on one machine
#
# The GPU build is `--features vulkan` (CubeCL SPIR-V through wgpu on Vulkan): burn 0.23's CUDA
# runtime needs an LLVM bundle downloaded at build time, which no machine here can reach (README,
# "GPU"). `run` needs a Vulkan loader (libvulkan.so.1) and the GPU's Vulkan driver; where the
# loader is missing it unpacks the Debian packages in .gl/ (see the README) first.
#
# The table: the shapes of scripts/bench_train.sh (4 layers, d 256, 512 tokens x 8 rows) and a
# 4k-context row (4096 tokens x 2 rows), training and inference tokens/s; dnalm fp32 on Vulkan
# against PyTorch + transformers on CUDA in fp32 and in bf16 autocast, the two sides alternated
# GPU_CHECK_ROUNDS times (default 2), medians reported. Budget: under 8 minutes on one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
bin=.devbin

build() {
  mkdir -p "$bin"
  # One invocation, so the three targets share one feature resolution (one build of burn).
  cargo build --release --locked -p dnalm-cli -p dnalm-model -p dnalm-train \
    --features dnalm-cli/vulkan --bin dnalm --test device_equivalence --bench train_throughput \
    --message-format=json-render-diagnostics | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        name = m["target"]["name"]
        if name in ("dnalm", "device_equivalence", "train_throughput"):
            shutil.copy(m["executable"], sys.argv[1] + "/" + name)' "$bin"
  strip "$bin"/dnalm "$bin"/device_equivalence "$bin"/train_throughput
  # ~100 MB each stripped (burn with both the CPU and the CubeCL backends); one archive with a
  # dictionary larger than a binary is ~33 MB, small enough to travel to a GPU machine.
  tar -C "$bin" -cf - dnalm device_equivalence train_throughput \
    | xz -T1 --lzma2=preset=9,dict=384MiB > "$bin/gpu.tar.xz"
  ls -la "$bin"
}

vulkan_loader() {
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then
    export VK_DRIVER_FILES=$icd
  fi
}

run() {
  if [ ! -x "$bin/dnalm" ] && [ -f "$bin/gpu.tar.xz" ]; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bin/gpu.tar.xz" "$bin"
  fi
  vulkan_loader
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  echo "== equivalence: cpu vs vulkan (1e-3 relative)"
  DNALM_TEST_DEVICE=vulkan "$bin/device_equivalence" --nocapture --test-threads 1 || failed="equivalence"
  echo "== the CLI on the GPU: 5 pretraining steps and an embedding, on cpu and on vulkan"
  local tmp
  tmp=$(mktemp -d)
  python3 - "$tmp/in.fa" <<'PY'
import sys
seq = "".join(l.strip() for l in open("data/lambda_phage.fa") if not l.startswith(">"))
with open(sys.argv[1], "w") as f:
    for i in range(64):
        f.write(f">w{i}\n{seq[i * 300:i * 300 + 300]}\n")
PY
  for device in cpu vulkan; do
    "$bin/dnalm" pretrain --config configs/mlm.toml --set train.steps=5 --set train.eval_every=5 \
      --set train.save_every=5 --output "$tmp/run-$device" --device "$device" 2>&1 | tail -2
    "$bin/dnalm" embed --model "$tmp/run-cpu/checkpoint-000005" --input "$tmp/in.fa" \
      --output "$tmp/$device.npy" --device "$device"
  done
  python3 - "$tmp" <<'PY'
import json, sys, numpy as np
d = sys.argv[1]
def losses(device):
    return [r["loss"] for r in map(json.loads, open(f"{d}/run-{device}/metrics.jsonl")) if r["kind"] == "train"]
lc, lg = losses("cpu"), losses("vulkan")
print("pretrain losses cpu   ", " ".join(f"{x:.5f}" for x in lc))
print("pretrain losses vulkan", " ".join(f"{x:.5f}" for x in lg))
assert len(lc) == len(lg) == 5 and max(abs(a - b) / abs(a) for a, b in zip(lc, lg)) < 1e-3
a, b = np.load(f"{d}/cpu.npy"), np.load(f"{d}/vulkan.npy")
err = np.abs(a - b).max() / np.abs(a).max()
print(f"embed: {a.shape[0]} vectors of {a.shape[1]}, cpu vs vulkan {err:.2e} relative")
assert err < 1e-3
PY
  echo "== speed: dnalm (vulkan, fp32) vs PyTorch (cuda, fp32 and bf16)"
  local rounds=${GPU_CHECK_ROUNDS:-2} runs=$tmp/runs
  : > "$runs"
  for shape in "512 8" "4096 2"; do
    set -- $shape
    for _ in $(seq "$rounds"); do
      BENCH_SEQ=$1 BENCH_BATCH=$2 BENCH_STEPS=10 BENCH_DEVICE=vulkan timeout 90 "$bin/train_throughput" \
        | grep '^{' | tail -1 >> "$runs" || echo "{\"impl\":\"dnalm\",\"seq\":$1,\"failed\":true}" >> "$runs"
      for dtype in fp32 bf16; do
        BENCH_SEQ=$1 BENCH_BATCH=$2 BENCH_STEPS=10 BENCH_DEVICE=cuda BENCH_DTYPE=$dtype \
          timeout 60 python3 scripts/bench_train.py | tail -1 >> "$runs"
      done
    done
  done
  python3 - "$runs" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def side(r):
    return "dnalm vulkan fp32" if r["impl"] == "dnalm" else f"pytorch cuda {r['dtype']}"
print("| shape | side | training tokens/s (median) | inference tokens/s (median) | runs |")
print("|---|---|---|---|---|")
for seq in sorted({r["seq"] for r in rows}):
    groups = {}
    for r in rows:
        if r["seq"] == seq:
            groups.setdefault(side(r), []).append(r)
    ours = [r for r in groups.get("dnalm vulkan fp32", []) if not r.get("failed")]
    for name, rs in groups.items():
        rs = [r for r in rs if not r.get("failed")]
        if not rs:
            print(f"| {seq} tokens | {name} | failed | failed | 0 |")
            continue
        t = statistics.median(r["train_tokens_per_s"] for r in rs)
        i = statistics.median(r["infer_tokens_per_s"] for r in rs)
        shape = f"{seq} tokens x {rs[0]['batch']}, {rs[0]['layers']} layers, d {rs[0]['d_model']}"
        print(f"| {shape} | {name} | {t:,.0f} | {i:,.0f} | {len(rs)} |")
    if ours:
        t = statistics.median(r["train_tokens_per_s"] for r in ours)
        i = statistics.median(r["infer_tokens_per_s"] for r in ours)
        for name, rs in groups.items():
            if name.startswith("pytorch"):
                pt = statistics.median(r["train_tokens_per_s"] for r in rs)
                pi = statistics.median(r["infer_tokens_per_s"] for r in rs)
                print(f"| {seq} tokens | dnalm / {name} | {t / pt:.2f}x | {i / pi:.2f}x | |")
PY
  rm -rf "$tmp"
}

case $mode in
  build) build ;;
  run) run ;;
  all) build && run ;;
  *) echo "usage: scripts/gpu_check.sh [build|run]" >&2; exit 2 ;;
esac
