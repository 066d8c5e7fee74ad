"""Command line: ``python -m defectlib {data,train,evaluate,predict,export}``.

Introduced in chapter 03 (baseline).

Exit status: 0 all done; 1 some inputs failed (the others were processed);
2 usage, config, data, checkpoint or output error (one line naming the file
and the problem; ``--debug`` shows the traceback); 130 interrupted (Ctrl-C),
with what was finished kept whole.

Each command imports the machinery it runs when it runs, so that ``--help``
and argument errors answer at once, without loading PyTorch.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from .errors import USER_ERRORS, DatasetError

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = ("exit status: 0 all done; 1 some inputs failed (the others were processed); "
          "2 usage, config, data, checkpoint or output error; 130 interrupted. --debug shows tracebacks.")


def _data_overrides(args: argparse.Namespace) -> dict:
    """Config overrides for ``--data DIR`` (your own folder dataset)."""
    if not getattr(args, "data", None):
        return {}
    from .data import describe_dataset

    spec = describe_dataset(args.data, args.classes, args.mask_format)
    if spec.layout == "magnetic_tile":
        return {"data.root": str(Path(args.data).resolve())}
    return {"data.dataset": "folder", "data.root": str(Path(args.data).resolve()),
            "data.classes": list(spec.classes), "data.mask_format": spec.mask_format}


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import describe_dataset, list_dataset, validate_dataset, validate_samples
    from .download import find_dataset, read_manifest, verify_manifest

    path = Path(args.path) if args.path else None
    if path is None or path.is_file():
        root = find_dataset(path)
        verify_manifest(root)
        samples = validate_dataset(root, progress=True)
        print(f"{root}: Magnetic Tile, {len(samples)} image/mask pairs, every file verified against the manifest")
        return EXIT_OK
    spec = describe_dataset(path, args.classes, args.mask_format)
    samples = list_dataset(spec)
    manifest = read_manifest()
    complete = spec.layout == "magnetic_tile" and all((path / name).is_file() for name in manifest)
    if complete:
        verify_manifest(path, manifest)
    validate_samples(samples, len(spec.classes), progress=True)
    what = "Magnetic Tile, every file verified against the manifest" if complete else (
        f"{spec.layout} layout, classes {', '.join(spec.classes)}, {spec.mask_format} masks")
    print(f"{path}: {len(samples)} image/mask pairs, all valid ({what})")
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .config import load_config, load_family, on_partition, parse_assignments, read_yaml, resolve_config
    from .experiments import get_predictions, get_run, predictions_path

    overrides = {**_data_overrides(args), **parse_assignments(args.set)}
    if "arms" in read_yaml(args.config):   # an experiment family: every arm (or --arm), fold by fold
        arms = load_family(args.config)
        unknown = set(args.arm or []) - set(arms)
        if unknown:
            raise ValueError(f"{args.config}: no arm(s) {sorted(unknown)}; arms: {', '.join(arms)}")
        configs = [resolve_config(c, c["profile"], overrides) for a, c in arms.items() if not args.arm or a in args.arm]
    else:
        configs = [load_config(args.config, overrides=overrides)]
    if args.partition:
        configs = [on_partition(c, args.partition) for c in configs]
    ctx = distributed.init()   # several processes under torchrun; one otherwise
    if ctx.is_main:
        from .paths import config_results_dir
        for where in dict.fromkeys(config_results_dir(c) for c in configs):
            print(f"results: {where.resolve()}", flush=True)
    try:
        for fold in args.fold:
            seeds = args.seed or [None if args.seed_offset is None else fold + args.seed_offset]
            for seed in seeds:     # None: the fold's own seed
                for cfg in configs:
                    record = get_run(cfg, fold, seed, retrain=args.retrain)
                    if ctx.is_main:
                        _print_run(record)
                        for split in args.predict or []:
                            try:
                                get_predictions(record, split, "none")
                            except FileNotFoundError as err:   # a stored run whose checkpoint is gone: go on
                                print(f"warning: {err}", file=sys.stderr, flush=True)
                                continue
                            print(f"{split} masks: {predictions_path(record, split, 'none').resolve()}", flush=True)
    finally:
        distributed.finish(ctx)
    return EXIT_OK


def _print_run(record: dict) -> None:
    print(f"run {record['run_id']}: best epoch {record['best_epoch']}, "
          f"val mIoU {record['val']['miou']:.4f}, defect mIoU {record['val']['defect_miou']:.4f}")
    if record.get("test"):
        print(f"test mIoU {record['test']['miou']:.4f}, defect mIoU {record['test']['defect_miou']:.4f}")
    from .records import checkpoint_file

    print(f"checkpoint: {checkpoint_file(record).resolve()}", flush=True)


def format_metrics(metrics: dict) -> str:
    """A plain-text table of per-class IoU/Dice (in percent) and the summary metrics."""
    lines = [f"{'class':<20}{'IoU %':>8}{'Dice %':>8}"]
    def cell(value: float) -> str:
        return f"{100 * value:>8.1f}" if value == value else f"{'-':>8}"   # NaN: undefined

    for name, iou in metrics["iou"].items():
        note = "  (absent from truth and prediction)" if iou != iou else ""
        lines.append(f"{name:<20}{cell(iou)}{cell(metrics['dice'][name])}{note}")
    labels = {"miou": "mIoU", "defect_miou": "defect mIoU", "binary_defect_iou": "binary defect IoU",
              "pixel_accuracy": "pixel accuracy", "image_auroc": "image AUROC", "image_accuracy": "image accuracy"}
    for key, label in labels.items():
        value = metrics[key]
        note = "  (undefined: every image has a defect, or none has)" if key == "image_auroc" and value != value else ""
        lines.append(f"{label:<20}{cell(value)}{note}")
    return "\n".join(lines)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import resolve_config
    from .experiments import evaluate_checkpoint
    from .models import load_checkpoint
    from .paths import write_json
    from .run_data import part_samples

    meta: dict = {}
    _, saved_cfg = load_checkpoint(args.checkpoint, meta)
    overrides = _data_overrides(args)
    if overrides.get("data.classes") and overrides["data.classes"] != saved_cfg["data"]["classes"]:
        raise ValueError(f"{args.data}: classes {overrides['data.classes']} differ from the checkpoint's "
                         f"{saved_cfg['data']['classes']}")
    cfg = resolve_config({k: v for k, v in saved_cfg.items() if k != "profile"}, saved_cfg.get("profile"), overrides)
    split = args.split or ("test" if args.data else "val")   # own data: the part the checkpoint never saw
    fold = args.fold if args.fold is not None else meta.get("fold", 0)   # the fold the checkpoint was trained for
    chosen = part_samples(cfg, split, fold)
    metrics, _ = evaluate_checkpoint(args.checkpoint, chosen, cfg=cfg, precision=args.precision, tta=args.tta,
                                     desc=split)
    where = "all images" if split == "all" else f"the {split} part of fold {fold}"
    print(f"{len(chosen)} images ({where}{', flip test-time augmentation' if args.tta == 'flips' else ''})")
    print(format_metrics(metrics))
    tta = "" if args.tta == "none" else f".tta-{args.tta}"     # stored apart from the plain evaluation
    out = Path(args.out or Path(args.checkpoint).with_suffix(f".{split}{tta}.json"))
    write_json(out, {"checkpoint": str(args.checkpoint), "split": split, "tta": args.tta,
                     "fold": None if split == "all" else fold, "images": len(chosen),
                     "metrics": metrics})
    print(f"wrote {out}")
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict_to_folder

    rows, failures = predict_to_folder(args.checkpoint, args.inputs, args.out, overwrite=args.overwrite,
                                       max_pixels=int(args.max_pixels * 1e6), precision=args.precision,
                                       backend=args.backend, tta=args.tta)
    print(f"wrote {len(rows) - len(failures)} prediction(s) to {args.out}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"{out}: --out is a folder; give the .onnx file to write")
    export_onnx(args.checkpoint, out)
    print(f"wrote {out}")
    return EXIT_OK


def _add_data_options(p: argparse.ArgumentParser, folder_option: bool = True) -> None:
    if folder_option:
        p.add_argument("--data", metavar="DIR", help="your own dataset folder: images/ + masks/ with matching stems "
                       "(or the Magnetic Tile layout), optionally described by DIR/dataset.yaml")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="class names, background first (default: "
                   "dataset.yaml, else 'background defect')")
    p.add_argument("--mask-format", choices=("binary", "index"), help="binary (0/255, 0/1 or 1-bit) or index "
                   "(class indices); default: dataset.yaml, else binary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m defectlib", epilog=EPILOG,
                                     description="Surface-defect segmentation on Magnetic Tile and your own images.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="find, download or validate a dataset", epilog=EPILOG,
                       description="Without --path: locate Magnetic Tile ($DEFECTLIB_DATA_DIR, data/magnetic-tile, "
                                   "../shared/datasets/magnetic-tile), else download the pinned upstream archive; "
                                   "check every SHA-256 and decode every image and mask. With --path ZIP: install "
                                   "from a local archive. With --path DIR: validate a dataset folder (layout, pairs, "
                                   "mask values) and report every problem at once.")
    p.add_argument("--path", help="dataset folder or zip archive")
    _add_data_options(p, folder_option=False)
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("train", help="train runs (config + fold + seed), or return their stored records", epilog=EPILOG,
                       description="Train a config on one or more folds and write each run's JSON record and best "
                                   "checkpoint under results/ (a temporary directory when DEFECTLIB_PROFILE=smoke; with --data, "
                                   "DIR/defectlib-results/; DEFECTLIB_RESULTS_DIR overrides both). "
                                   "A stored record with the same resolved-config hash, fold and seed is reused "
                                   "unless --retrain is given. A folder without splits.json gets a seeded 5-fold "
                                   "partition written under splits/ of that results folder.")
    p.add_argument("--config", required=True, help="YAML config (configs/baseline.yaml) or experiment family "
                   "(configs/loss_ablation.yaml: every arm, fold by fold)")
    p.add_argument("--arm", nargs="+", help="with a family: only these arms")
    p.add_argument("--fold", type=int, nargs="+", default=[0], help="test fold(s) k; validation is k+1 mod 5 (default 0)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, nargs="+", help="run seed(s): each fold is trained once per seed "
                       "(default: one run, seeded with the fold)")
    seeds.add_argument("--seed-offset", type=int, metavar="N", help="one run per fold, seeded with the fold "
                       "plus N (5: chapter 6's second seeds)")
    p.add_argument("--retrain", action="store_true", help="train even if a record exists")
    p.add_argument("--predict", nargs="+", choices=("val", "test"), metavar="SPLIT",
                   help="also store each run's predicted masks of these parts of its fold (val, test) under "
                        "<results>/predictions, while its checkpoint is here; a chapter can then show them later")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting of the config "
                   "(repeatable; checked against the schema like a YAML key), e.g. --set train.steps=400 "
                   "--set data.augment=d4; the run is then a run of another config, with its own hash")
    p.add_argument("--partition", choices=("grouped", "regions", "random"),
                   help="Magnetic Tile fold partition (default: the config's own data.split): grouped by tile "
                        "region (grouped: the first region groups; regions: the corrected ones, chapter 6's "
                        "configs) or random image level, which lets one region sit in training and test (runs "
                        "named <config>-random)")
    _add_data_options(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a split or a folder", epilog=EPILOG,
                       description="Evaluate a checkpoint at native resolution; print per-class IoU and Dice and "
                                   "the summary metrics, and write them as JSON.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train")
    p.add_argument("--split", choices=("train", "val", "test", "all"),
                   help="part of fold --fold, or all images (default: val; with --data, test)")
    p.add_argument("--fold", type=int, help="fold k of the partition (default: the checkpoint's own fold)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--tta", choices=("none", "flips"), default="none",
                   help="test-time augmentation: flips averages the logits over the four flips (4x the work)")
    p.add_argument("--out", help="JSON output (default: next to the checkpoint)")
    _add_data_options(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="segment images or folders of images", epilog=EPILOG,
                       description="Write <stem>_mask.png (class indices), <stem>_overlay.png and predictions.csv "
                                   "(a row per input: status, error, defect class, area fraction, score) to --out. "
                                   "Unreadable or too large inputs are reported and skipped (exit status 1). An "
                                   "--out that is a file or an input folder is refused, and so is one holding an "
                                   "earlier run's outputs unless --overwrite.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train, or with --backend "
                   "onnxruntime a model written by export")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's outputs in --out")
    p.add_argument("--max-pixels", type=float, default=50, metavar="MPX",
                   help="skip images larger than this many megapixels (default 50)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--tta", choices=("none", "flips"), default="none",
                   help="test-time augmentation: flips averages the logits over the four flips (4x the work)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="inference engine (default torch)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX", epilog=EPILOG,
                       description="Write the checkpoint's model as one ONNX file with dynamic batch and image size "
                                   "(multiples of 32); class names, normalisation and input size are in its "
                                   "metadata. Run it with predict --backend onnxruntime.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted: what was finished is kept whole (predict lists it in predictions.csv)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (*USER_ERRORS, FileNotFoundError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        if isinstance(exc, DatasetError) and args.command == "data":
            print(f"error: {exc}", file=sys.stderr)  # a validation report: every problem, one per line
        else:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(exc: Exception) -> str:
    """A one-line form of a multi-line error (the first problem, and how many more)."""
    if isinstance(exc, DatasetError) and exc.problems:
        more = f" (and {len(exc.problems) - 1} more problem(s))" if len(exc.problems) > 1 else ""
        return exc.problems[0] + more
    return " ".join(str(exc).split())
