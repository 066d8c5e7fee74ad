"""What a run costs: the square 256 px recipe's 30-epoch run against the native recipes' step budgets.

Measured in one process on this machine, on fold 0 of the corrected folds:
decoding the training and validation images, the seconds of one training
step (batch 8: a 256 px squashed image each, or a 256, 192 or 128 px native crop each,
through the same sampler, augmentation, loss and optimizer as a run) as the
median of interleaved blocks, and one pass over the whole validation fold.
From these it prints each run's wall time as its budget implies (steps x step
time + validations x validation time + decoding), its ratio to the square
recipe's, the share of validation, and the training images/s ratio.  Only ratios compare
across machines.

    python benchmarks/run_cost.py [--steps 12] [--repeats 3] [--out benchmarks/results/run_cost.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from defectlib import config, distributed, experiments, models, training
from defectlib.paths import project_root, write_json
from timing import interleaved_medians

RECIPES = {  # name: (config, overrides)
    "square 256 px, 30 epochs": ("configs/loss_winner.yaml", {"data.split": "regions"}),
    "native 256 px crops, 4000 steps": ("configs/native_4000.yaml", {}),
    "native 192 px crops, 4000 steps": ("configs/native_c192.yaml", {}),
    "native 128 px crops, 4000 steps": ("configs/native_c128.yaml", {}),
}
SQUARE = "square 256 px, 30 epochs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved blocks per recipe")
    parser.add_argument("--out", default=str(project_root() / "benchmarks" / "results" / "run_cost.json"))
    args = parser.parse_args()
    training.set_seed(0)
    ctx = distributed.init()
    setups = {}
    for name, (path, overrides) in RECIPES.items():
        cfg = config.load_config(path, profile="full", overrides=overrides)
        t = time.perf_counter()
        data = experiments.prepare_data(cfg, 0, Path("/tmp"), ctx, progress=False)
        decode = time.perf_counter() - t
        parts = experiments.build_run(cfg, data.train, 0, ctx)
        model = models.prepare(parts.model, cfg["train"]["channels_last"])
        optimizer, scheduler = parts.schedule.build(model, len(parts.loader))
        setups[name] = {"cfg": cfg, "data": data, "parts": parts, "model": model, "opt": (optimizer, scheduler),
                        "decode_seconds": decode, "batches": iter(())}

    def block(name: str) -> float:
        """Seconds per step over one block of ``--steps`` steps (batches drawn as a run draws them)."""
        s = setups[name]
        precision = models.run_precision(s["cfg"]["train"]["precision"])
        t = time.perf_counter()
        for _ in range(args.steps):
            batch = next(s["batches"], None)
            if batch is None:
                s["batches"] = iter(s["parts"].loader)
                batch = next(s["batches"])
            training.train_step(s["model"], batch, s["parts"].loss, *s["opt"], precision,
                                s["cfg"]["train"]["channels_last"])
        return (time.perf_counter() - t) / args.steps

    step_seconds = interleaved_medians(setups, block, args.repeats)
    rows = {}
    for name, s in setups.items():
        cfg, tc = s["cfg"], s["cfg"]["train"]
        t = time.perf_counter()
        training.evaluate(s["model"], s["data"].val, cfg["data"]["classes"],
                          precision=models.run_precision(tc["precision"]), channels_last=tc["channels_last"])
        val = time.perf_counter() - t
        if tc["steps"] is None:
            steps, validations = tc["epochs"] * len(s["parts"].loader), tc["epochs"]
        else:
            steps, validations = tc["steps"], tc["steps"] // tc["val_every"]
        train = steps * step_seconds[name]
        total = s["decode_seconds"] + train + (validations + 1) * val    # + the best weights' evaluation
        rows[name] = {"steps": steps, "validations": validations, "seconds_per_step": step_seconds[name],
                      "train_images_per_second": tc["batch_size"] / step_seconds[name],
                      "validation_pass_seconds": val, "decode_seconds": s["decode_seconds"],
                      "run_minutes": total / 60, "validation_share": (validations + 1) * val / total}
    for r in rows.values():
        r["over_square_run_time"] = r["run_minutes"] / rows[SQUARE]["run_minutes"]
        r["over_square_train_images_per_second"] = r["train_images_per_second"] / rows[SQUARE]["train_images_per_second"]
    result = {"machine": {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                          "device": str(ctx.device)},
              "recipes": rows}
    write_json(Path(args.out), result)
    print(f"{'recipe':<34}{'steps':>7}{'s/step':>8}{'img/s':>7}{'val s':>7}{'run min':>9}{'val share':>10}"
          f"{'x square':>9}")
    for name, r in rows.items():
        print(f"{name:<34}{r['steps']:>7}{r['seconds_per_step']:>8.2f}{r['train_images_per_second']:>7.1f}"
              f"{r['validation_pass_seconds']:>7.1f}{r['run_minutes']:>9.1f}{100 * r['validation_share']:>9.1f}%"
              f"{r['over_square_run_time']:>9.2f}")
    print("(all measured in this one run)")


if __name__ == "__main__":
    main()
