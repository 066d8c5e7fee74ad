#!/usr/bin/env bash
# The GPU checks in one command, for a machine with a CUDA GPU (a few minutes): the CUDA unit tests,
# a short native-resolution run on the GPU with its throughput, and a 2-process torchrun (NCCL when
# the machine has a GPU per process, else gloo). Results go to ${OUT:-benchmarks/results/device}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/device}"
mkdir -p "$OUT"
PY="${PY:-python}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
$PY -m pytest -q tests/test_cuda.py -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.txt"
export DEFECTLIB_RESULTS_DIR="$OUT/results"
$PY - <<'PY' 2>&1 | tee "$OUT/native_run.txt"
import json, os, time
from defectlib import config, experiments
cfg = config.load_config("configs/native.yaml", overrides={"name": "native-device-check", "train.steps": 200,
                                                           "train.val_every": 100})
t = time.time()
record = experiments.train_run(cfg, fold=0, progress=False)
print(json.dumps({"device": record["environment"], "wall_seconds": time.time() - t,
                  "train_images_per_second": record["train_images_per_second"],
                  "val_seconds": record["val_seconds"], "val_miou": record["val"]["miou"]}, indent=1))
PY
DEFECTLIB_PROFILE=smoke $PY -m torch.distributed.run --standalone --nproc_per_node=2 -m defectlib train --config configs/baseline.yaml \
    --fold 2 2>&1 | tail -5 | tee "$OUT/torchrun.txt"
echo "device checks written to $OUT"
