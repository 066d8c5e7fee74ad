"""Inference speed and accuracy of a checkpoint on this CPU: PyTorch fp32 and bfloat16, ONNX Runtime fp32 and int8.

int8 is ONNX Runtime's static quantisation (QDQ, per-channel int8 weights,
uint8 activations with MinMax ranges) calibrated on ``--calibration-images``
training images of the checkpoint's fold.  It is measured here only: it loses
more accuracy than the library accepts for an export option (chapter 9).

For each engine: images/s of the network on ``--batch`` test images spread evenly
over the test fold, as evaluation feeds them (squashed input: one batch at the checkpoint's input
size; native input: one image at a time at its own size, padded and tiled as
in evaluation), the median of interleaved repetitions (so that a slow
moment of the machine hits every engine alike), its ratio to PyTorch fp32,
and the mIoU and defect mIoU of the same engine on the checkpoint's test
fold at native resolution, all measured in this one run.  Writes the table
as JSON for the book's "Deploying the model" page.

    python benchmarks/infer_speed.py [--checkpoint results/checkpoints/<run>.pt] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from defectlib import export, models, run_data, training
from defectlib.paths import project_root
from defectlib.preprocess import pad_to_stride
from timing import interleaved_medians

DEFAULT_CHECKPOINT = "results/checkpoints/native-c192-514d787a2232-fold0-seed5.pt"   # the released model
DEFAULT_OUT = "benchmarks/results/infer_speed.json"


class OnnxAsModule(nn.Module):
    """An ONNX Runtime model behind the ``nn.Module`` call that defectlib's evaluation uses."""

    def __init__(self, onnx_model: export.OnnxModel):
        super().__init__()
        self.onnx_model = onnx_model

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.onnx_model.logits(batch.contiguous())


def calibration_images(cfg: dict, fold: int, count: int) -> list[np.ndarray]:
    """``count`` training images of run ``fold`` (evenly spaced), each a normalised ``(1, 3, H, W)`` array."""
    train = run_data.part_samples(cfg, "train", fold)
    dataset = run_data.make_dataset(cfg, train[:: max(1, len(train) // count)][:count])
    return [np.ascontiguousarray(pad_to_stride(dataset[i]["image"][None]).numpy(), dtype=np.float32)
            for i in range(len(dataset))]


def quantize_int8(model_path: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    """Static int8 quantisation of an exported model (QDQ, per-channel weights, MinMax activation ranges)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {"image": batch}

    prepared = out.with_name("prepared.onnx")
    # the symbolic shape pass cannot follow the dynamic height and width
    quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    quantized = onnx.load(out)   # keep the export's defectlib.* metadata, which OnnxModel reads
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(onnx.load(model_path).metadata_props)
    onnx.save(quantized, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = project_root() / args.checkpoint if not Path(args.checkpoint).exists() else Path(args.checkpoint)
    meta: dict = {}
    net, cfg = models.load_checkpoint(checkpoint, meta)
    fold = int(meta.get("fold", 0))
    classes = cfg["data"]["classes"]
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export.export_onnx(checkpoint, Path(tmp) / "model.onnx")
        calibration = calibration_images(cfg, fold, args.calibration_images)
        int8_path = quantize_int8(fp32_path, Path(tmp) / "model-int8.onnx", calibration)
        engines = {  # name: (module, precision, channels_last)
            "PyTorch fp32": (models.prepare(net, False), "fp32", False),
            "PyTorch bf16 + channels_last": (models.prepare(models.load_checkpoint(checkpoint)[0], True),
                                             "bf16", True),
            "ONNX Runtime fp32": (OnnxAsModule(export.OnnxModel(fp32_path, args.threads)), "fp32", False),
            "ONNX Runtime int8 (static)": (OnnxAsModule(export.OnnxModel(int8_path, args.threads)), "fp32", False),
        }
        test = run_data.make_dataset(cfg, run_data.fold_samples(cfg, fold)["test"], progress=True)
        spread = np.linspace(0, len(test) - 1, min(args.batch, len(test))).round().astype(int)   # all categories
        images = [test[int(i)]["image"] for i in spread]
        # native images differ in size, so they go one at a time, as evaluate() feeds them
        inputs = [image[None] for image in images] if test.prep.native else [torch.stack(images)]

        @torch.no_grad()
        def step(name: str) -> float:
            module, precision, cl = engines[name]
            t = time.perf_counter()
            for x in inputs:
                test.prep.forward(lambda b: models.logits(module, b, precision, cl), x)
            return time.perf_counter() - t

        medians = interleaved_medians(engines, step, args.repeats)
        rows = []
        for name, (module, precision, cl) in engines.items():
            metrics = training.evaluate(module, test, classes, precision=precision, channels_last=cl,
                                        progress=True, desc=name)
            rows.append({"engine": name, "images_per_second": len(images) / medians[name],
                         "test_miou": metrics["miou"], "test_defect_miou": metrics["defect_miou"]})
    base = rows[0]["images_per_second"]
    for row in rows:
        row["ratio"] = row["images_per_second"] / base
    result = {"checkpoint": str(args.checkpoint), "fold": fold, "test_images": len(test), "threads": args.threads,
              "batch": len(images), "input": cfg["data"]["input"],
              "image_size": None if test.prep.native else cfg["data"]["image_size"],
              "native_sizes": [list(image.shape[-2:]) for image in images] if test.prep.native else None,
              "repeats": args.repeats,
              "calibration_images": len(calibration),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}
    shape = "native size, one image at a time" if test.prep.native else f"{cfg['data']['image_size']} px, one batch"
    print(f"threads {args.threads}, {len(images)} images, {shape}, median of {args.repeats} "
          f"interleaved batches; accuracy on the {len(test)} test images of fold {fold}")
    print(f"{'engine':<32}{'img/s':>8}{'ratio':>8}{'test mIoU':>11}{'defect mIoU':>13}")
    for row in rows:
        print(f"{row['engine']:<32}{row['images_per_second']:>8.1f}{row['ratio']:>8.2f}"
              f"{100 * row['test_miou']:>10.1f}%{100 * row['test_defect_miou']:>12.1f}%")
    out = project_root() / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
