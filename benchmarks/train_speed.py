"""Training and inference speed of the baseline model on this CPU: fp32 against bfloat16.

Prints images/s for one training step (forward, backward, AdamW step) and for
inference, batch 8 at 256 px, U-Net / EfficientNet-Lite0 with the narrowed
decoder, as the median of interleaved repetitions (so that a slow moment of the
machine hits every variant alike), and each variant's ratio to fp32, all
measured in this one run.

    python benchmarks/train_speed.py [--repeats 8] [--batch 8] [--size 256]
"""
from __future__ import annotations

import argparse
import time

import torch

from defectlib import config, models
from defectlib.losses import build_loss
from timing import interleaved_medians

VARIANTS = {  # name: (precision, channels_last)
    "fp32": ("fp32", False),
    "bf16 autocast": ("bf16", False),
    "bf16 + channels_last": ("bf16", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if models.resolve_precision("auto") != "bf16":
        print("note: this CPU has no native bfloat16; the bf16 rows measure emulation")
    cfg = config.load_config("configs/baseline.yaml", profile="full")
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, len(cfg["data"]["classes"]), (args.batch, args.size, args.size))
    loss_fn = build_loss("ce")
    nets = {}
    for name, (precision, cl) in VARIANTS.items():
        net = models.prepare(models.model_from_config(cfg, pretrained=False), cl)
        nets[name] = (net, torch.optim.AdamW(net.parameters(), lr=1e-4), precision, cl)

    def train_step(name: str) -> float:
        net, opt, precision, cl = nets[name]
        net.train()
        t = time.perf_counter()
        opt.zero_grad()
        loss_fn(models.logits(net, x, precision, cl), y).backward()
        opt.step()
        return time.perf_counter() - t

    @torch.no_grad()
    def infer_step(name: str) -> float:
        net, _, precision, cl = nets[name]
        net.eval()
        t = time.perf_counter()
        models.logits(net, x, precision, cl)
        return time.perf_counter() - t

    results = {}
    for kind, step in (("training", train_step), ("inference", infer_step)):
        medians = interleaved_medians(VARIANTS, step, args.repeats)
        results[kind] = {name: args.batch / seconds for name, seconds in medians.items()}
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, {args.size} px, median of {args.repeats} "
          f"interleaved steps; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'':<24}{'train img/s':>12}{'ratio':>8}{'infer img/s':>13}{'ratio':>8}")
    for name in VARIANTS:
        tr, inf = results["training"][name], results["inference"][name]
        print(f"{name:<24}{tr:>12.1f}{tr / results['training']['fp32']:>8.2f}"
              f"{inf:>13.1f}{inf / results['inference']['fp32']:>8.2f}")


if __name__ == "__main__":
    main()
