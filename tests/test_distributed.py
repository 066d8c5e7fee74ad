import json
import os
import subprocess
import sys

import numpy as np
import pytest

from defectlib.config import config_hash, load_config
from defectlib.download import sample_dataset
from defectlib.paths import project_root
from defectlib.training import DefectBalancedSampler


def test_ranks_share_each_epoch_without_overlap_and_in_equal_parts():
    has_defect = [True] * 7 + [False] * 20
    single = DefectBalancedSampler(has_defect, free_per_epoch=4, seed=3)
    shards = [DefectBalancedSampler(has_defect, free_per_epoch=4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (1, 2):
        for s in (single, *shards):
            s.set_epoch(epoch)
        full = list(single)
        parts = [list(s) for s in shards]
        assert len(parts[0]) == len(parts[1]) == len(shards[0]) == 6      # 11 images padded to 12
        assert sorted(parts[0] + parts[1]) == sorted(full + full[:1])      # the epoch, its first image repeated
        assert parts[0] == full[0::2] and parts[1] == (full + full[:1])[1::2]
    with pytest.raises(ValueError, match="rank 2"):
        DefectBalancedSampler(has_defect, 4, rank=2, world_size=2)


def test_torchrun_with_two_gloo_processes_trains_one_run(tmp_path):
    env = {**os.environ, "DEFECTLIB_PROFILE": "smoke", "DEFECTLIB_RESULTS_DIR": str(tmp_path),
           "DEFECTLIB_DATA_DIR": str(sample_dataset()), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "defectlib", "train", "--config", "configs/baseline.yaml", "--fold", "2"]
    done = subprocess.run(cmd, cwd=project_root(), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run baseline-") == 1          # rank 0 alone prints
    records = list((tmp_path / "runs").glob("*.json"))
    assert len(records) == 1 and len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1
    record = json.loads(records[0].read_text())
    assert record["world_size"] == 2
    single = load_config("configs/baseline.yaml", profile="smoke")
    assert record["config_hash"] == config_hash(single)      # the config of a single-process run
    losses = [e["train_loss"] for e in record["history"]]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert record["split_sizes"]["train"] > 0 and np.isfinite(record["val"]["miou"])
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
