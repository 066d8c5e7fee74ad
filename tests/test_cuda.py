"""The GPU path: training and evaluation on CUDA in bfloat16 and channels-last. Skipped without a GPU;
``benchmarks/device_check.sh`` runs these on a GPU machine."""
import numpy as np
import pytest
import torch

from defectlib import config, distributed, experiments, inference, records
from defectlib.training import evaluate
from defectlib.run_data import fold_samples, make_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_the_default_device_is_the_gpu():
    assert distributed.init().device.type == "cuda"


def test_a_native_run_trains_on_the_gpu_in_bf16(smoke_config, tmp_path):
    cfg = config.resolve_config(smoke_config, "smoke", {"data.input": "native", "train.steps": 4,
                                                        "train.val_every": 2, "train.precision": "bf16",
                                                        "name": "native-cuda"})
    record = experiments.train_run(cfg, fold=0, progress=False, results_root=tmp_path)
    assert record["environment"]["device"] == "cuda" and record["environment"]["gpu"]
    assert record["precision"] == "bf16" and np.isfinite(record["val"]["miou"])
    losses = [e["train_loss"] for e in record["history"]]
    assert all(np.isfinite(losses))


def test_gpu_evaluation_matches_the_cpu_one(trained_run):
    record, root = trained_run
    model = inference.Predictor(records.checkpoint_file(record, root), precision="fp32").model
    cfg = record["config"]
    ds = make_dataset(cfg, fold_samples(cfg, 0)["val"])
    on_cpu = evaluate(model.cpu(), ds, cfg["data"]["classes"], precision="fp32")
    on_gpu = evaluate(model.cuda(), ds, cfg["data"]["classes"], precision="fp32")
    cm_cpu, cm_gpu = np.array(on_cpu["confusion_matrix"]), np.array(on_gpu["confusion_matrix"])
    assert np.abs(cm_cpu - cm_gpu).sum() <= cm_cpu.sum() // 1000     # float rounding at near-ties only
