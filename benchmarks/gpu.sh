#!/usr/bin/env bash
# The whole GPU benchmark in one script, about 5 minutes on one H100 (issue 5):
#   1. augmentation only, 32 px (batch 512) and 224 px (batch 256): our batched pipeline on the GPU
#      (the default torchvision-exact sequential jitter, and the opt-in colour twist as a second row)
#      vs torchvision.transforms.v2 per sample in DataLoader workers (all cores)
#      and vs Kornia's AugmentationSequential of the same steps on the same GPU batch;
#   2. training, bf16, channels_last: ResNet-18 CIFAR stem 32 px batch 512 and ResNet-50 224 px
#      batch 256, our engine (contrastive.training.fit, results.json) vs the lightly reference loop;
#      40 warm-up steps (past the reference loader's prefetch), 30 timed;
#   3. JPEG decode of 512 synthetic 500x375 JPEGs: PIL + reduced-size draft in workers vs
#      torchvision.io.decode_jpeg(device="cuda") in batches;
#   4. methods: images/s of every method row (throughput.py METHOD_ROWS; multi-crop 2 x 32 px + 6 x 16 px views),
#      ResNet-18 32 px batch 512 bf16 channels_last, each vs simclr in the same run;
#   5. (COMPILE=1) ResNet-18 32 px again with trainer.compile (ours only): compile pays off or not.
# Results: $OUT (or benchmarks/results/) gpu.txt, throughput_gpu.json, *.log.
# CPU smoke test of the same code path:  python benchmarks/throughput.py --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true; nproc; } > "$out/gpu.txt" 2>&1
python - <<'PY' >> "$out/gpu.txt" 2>&1
import kornia, torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "kornia", kornia.__version__,
      "cuda", torch.cuda.is_available())
try:
    import lightly; print("lightly", lightly.__version__)
except ImportError as exc:
    print("lightly missing: the reference loop will report an error:", exc)
PY
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
status=0
timeout "${BENCH_TIMEOUT:-420}" python benchmarks/throughput.py --device cuda --preset gpu \
  --output "$out/throughput_gpu.json" 2> "$out/throughput_gpu.log" || status=$?
tail -n 20 "$out/throughput_gpu.log"
timeout "${METHODS_TIMEOUT:-240}" python benchmarks/throughput.py --device cuda --preset gpu --parts methods \
  --output "$out/throughput_gpu_methods.json" 2> "$out/throughput_gpu_methods.log" || status=$?
tail -n 5 "$out/throughput_gpu_methods.log"
if [[ "${COMPILE:-0}" == "1" ]]; then
  timeout 240 python benchmarks/throughput.py --device cuda --preset gpu --parts train --sides ours --compile \
    --output "$out/throughput_gpu_compile.json" 2> "$out/throughput_gpu_compile.log" || status=$?
fi
exit "$status"
