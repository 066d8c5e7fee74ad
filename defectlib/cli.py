"""Command line: ``python -m defectlib {data,train,evaluate,predict}``.

Introduced in chapter 03 (baseline).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import DatasetError


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import find_dataset, validate_dataset, verify_manifest

    root = find_dataset(args.path)
    verify_manifest(root)
    samples = validate_dataset(root, progress=True)
    print(f"{root}: {len(samples)} image/mask pairs, all files verified")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .experiments import get_run, load_config

    cfg = load_config(args.config)
    record = get_run(cfg, args.seed, retrain=args.retrain)
    print(f"run {record['run_id']}: best epoch {record['best_epoch']}, "
          f"val mIoU {record['val']['miou']:.4f}, defect mIoU {record['val']['defect_miou']:.4f}")
    if record.get("test"):
        print(f"test mIoU {record['test']['miou']:.4f}, defect mIoU {record['test']['defect_miou']:.4f}")
    print(f"checkpoint: {record['checkpoint']['path']}")
    return 0


def format_metrics(metrics: dict) -> str:
    """A plain-text table of per-class IoU/Dice and the summary metrics."""
    lines = [f"{'class':<12}{'IoU':>8}{'Dice':>8}"]
    for name, iou in metrics["iou"].items():
        lines.append(f"{name:<12}{iou:>8.4f}{metrics['dice'][name]:>8.4f}")
    for key in ("miou", "defect_miou", "binary_defect_iou", "pixel_accuracy", "image_auroc", "image_accuracy"):
        lines.append(f"{key:<20}{metrics[key]:>8.4f}")
    return "\n".join(lines)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .experiments import write_json
    from .training import dataset_samples, eval_dataset, evaluate, load_checkpoint

    model, cfg = load_checkpoint(args.checkpoint)
    ds = eval_dataset(cfg, dataset_samples(cfg)[args.split])
    metrics = evaluate(model, ds, progress=True, desc=args.split)
    print(format_metrics(metrics))
    out = Path(args.out or Path(args.checkpoint).with_suffix(f".{args.split}.json"))
    write_json(out, {"checkpoint": str(args.checkpoint), "split": args.split, "images": len(ds), "metrics": metrics})
    print(f"wrote {out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict_to_folder

    results, failures = predict_to_folder(args.checkpoint, args.inputs, args.out)
    print(f"wrote {len(results)} prediction(s) to {args.out}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m defectlib",
                                     description="Surface-defect segmentation on Magnetic Tile and your own images.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="find or download the Magnetic Tile dataset and verify every file",
                       description="Locate the dataset (argument, $DEFECTLIB_DATA_DIR, data/magnetic-tile, "
                                   "../shared/datasets/magnetic-tile), else download the pinned upstream archive; "
                                   "check every SHA-256 and decode every image and mask.")
    p.add_argument("--path", help="dataset directory or zip archive")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("train", help="train one run (config + seed), or return its stored record",
                       description="Train a config with a seed and write its JSON record and best checkpoint under "
                                   "results/ (a temporary directory when DEFECTLIB_PROFILE=smoke). A stored record "
                                   "with the same config hash and seed is reused unless --retrain is given.")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/baseline.yaml")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--retrain", action="store_true", help="train even if a record exists")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on the val or test split",
                       description="Evaluate a checkpoint at native resolution on a split of the committed "
                                   "Magnetic Tile split; print the metric table and write it as JSON.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--out", help="JSON output (default: next to the checkpoint)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="segment images or folders of images",
                       description="Write <stem>_mask.png (class indices 0..5), <stem>_overlay.png and "
                                   "predictions.csv (defect class, area fraction, score per image) to --out. "
                                   "Unreadable inputs are reported and skipped; exit status 1 if any failed.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
