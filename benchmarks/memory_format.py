"""Channels-last (NHWC) against the default (NCHW) layout of the model's convolution weights.

`build_model` returns the model in channels-last; this benchmark says what that buys. Both
layouts of the default model (params.yaml, random weights: the timings do not depend on them)
run the same work in interleaved rounds in one process, and their ratio is reported:
  train step  forward, losses, backward and an AdamW step on one batch of `train.batch_size`
              clips at `train.image_size` (what a Ray Train worker does per step)
  inference   a forward pass of the same batch at the test size (`evaluate.image_size`)
Writes benchmarks/results/memory_format{_cuda_bf16}.{json,md}.

    python benchmarks/memory_format.py [--device cpu|cuda] [--bf16] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from model_cost import (
    device_label,
    make_inputs,
    write_results,
)  # benchmarks/model_cost.py: same inputs and results files

from avs.config import Config, load_config
from avs.eval.inference import inference_size
from avs.model import build_model, compute_losses
from avs.train.step import freeze_audio_encoder, make_optimizer, set_training_mode

LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC (channels-last, the default)": torch.channels_last}


def timed(fn, device: str) -> float:
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(works: dict[str, dict[str, Callable[[], object]]], rounds: int) -> dict[str, dict[str, float]]:
    """Each work's variants run once to warm up, then in turn for `rounds` rounds; median seconds (CPU).

    Taking turns spreads a machine's drift (other load, clock changes) over every variant alike.
    """
    medians = {}
    for work, variants in works.items():
        for fn in variants.values():
            fn()
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                seconds[name].append(timed(fn, "cpu"))
        medians[work] = {name: round(statistics.median(times), 4) for name, times in seconds.items()}
        print(work, medians[work], flush=True)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg: Config = load_config(args.params, ["model.backbone_weights=null"])
    frames = cfg.stamps.num_frames
    train_batch = make_inputs(cfg.train.batch_size, frames, cfg.train.image_size, args.device)
    test_batch = make_inputs(cfg.train.batch_size, frames, inference_size(cfg), args.device)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16)
    labelled = torch.ones(train_batch[2].shape[:2], dtype=torch.bool, device=args.device)

    models = {}
    for name, layout in LAYOUTS.items():
        torch.manual_seed(0)
        model = build_model(cfg).to(args.device, memory_format=layout)
        if cfg.model.freeze_audio:
            freeze_audio_encoder(model)
        models[name] = (model, make_optimizer(model, cfg))

    def train_step(name: str) -> None:
        model, optimizer = models[name]
        set_training_mode(model, cfg.model.freeze_audio)
        with autocast:
            outputs = model(*train_batch[:2])
            losses = compute_losses(outputs, train_batch[2], labelled, cfg.loss, 5.0)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    def inference(name: str) -> None:
        model = models[name][0]
        model.eval()
        with torch.inference_mode(), autocast:
            model(*test_batch[:2])

    seconds: dict[tuple[str, str], list[float]] = {}
    for work, fn in (("train step", train_step), ("inference", inference)):
        for name in models:
            fn(name)  # warm-up
        for _ in range(args.rounds):
            for name in models:
                seconds.setdefault((work, name), []).append(timed(lambda: fn(name), args.device))
    result = {
        "benchmark": "memory_format",
        "device": device_label(args.device),
        "cpus": os.cpu_count(),
        **vars(args),
        "clips": cfg.train.batch_size,
        "frames": frames,
        "train_size": cfg.train.image_size,
        "test_size": inference_size(cfg),
        "seconds": {f"{work} | {name}": round(statistics.median(v), 4) for (work, name), v in seconds.items()},
    }
    write_results("memory_format", result, render(result), args.device, args.bf16)


def render(result: dict) -> str:
    names = list(LAYOUTS)
    lines = [
        f"# Convolution weight layout ({result['device']}, {'bf16' if result['bf16'] else 'fp32'}, median of "
        f"{result['rounds']} interleaved rounds)",
        "",
        f"One batch of {result['clips']} clips x {result['frames']} frames: the train step at "
        f"{result['train_size']} px (forward, losses, backward, AdamW), inference at {result['test_size']} px.",
        "",
        f"| work | {names[0]} s | {names[1]} s | NHWC time / NCHW time |",
        "|---|---|---|---|",
    ]
    for work in ("train step", "inference"):
        nchw, nhwc = (result["seconds"][f"{work} | {name}"] for name in names)
        lines.append(f"| {work} | {nchw} | {nhwc} | {nhwc / nchw:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
