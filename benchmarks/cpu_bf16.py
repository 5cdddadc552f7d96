"""bf16 autocast on the CPU against fp32: the default model's training step, and the two kinds of
convolution that decide the difference.

  train step       `avs.train.step.train_step` on the default model (forward, losses, backward,
                   clipping, AdamW; a batch of random clips of the training size) in fp32, under
                   bf16 autocast throughout (`use_bf16`, as on a GPU), and with the decoder side
                   alone in bf16 (`RAVS.cpu_bf16_decoder`, what `train.cpu_bf16_decoder` turns on)
  decoder conv     the FPN decoder's 3x3 convolution at 1/4 scale (decoder_dim to decoder_dim,
                   channels-last), forward + backward: the largest single cost of the step
  depthwise conv   an EfficientNet-Lite0 depthwise 5x5 convolution of stride 2 (144 channels, 1/4
                   to 1/8 scale, channels-last), forward + backward

The `train` stage uses bf16 throughout on GPUs and fp32 on CPUs, unless `train.cpu_bf16_decoder`
puts the decoder side in bf16 on a CPU with native bf16 (AVX512-BF16, AMX): this measures what
each would gain there. Interleaved rounds in one process, medians. Writes
benchmarks/results/cpu_bf16.{json,md}.

    python benchmarks/cpu_bf16.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
from torch import nn

from avs.config import load_config
from avs.data.stream import ClipBatch
from avs.model import build_model
from avs.train.step import make_optimizer, native_bf16, train_step, warmup_cosine
from memory_format import interleaved_medians  # benchmarks/memory_format.py
from model_cost import device_label, make_inputs, write_results  # benchmarks/model_cost.py


def conv_pass(conv: nn.Conv2d, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def run() -> None:
        x.grad = conv.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = conv(x)
        y.float().sum().backward()
    return run


def works(cfg) -> dict[str, dict[str, Callable[[], None]]]:
    """Each piece of work as callables by precision: fp32, bf16 (autocast) and, for the step, the decoder side in bf16."""
    frames, clips, size = cfg.stamps.num_frames, cfg.train.batch_size, cfg.train.image_size
    g = torch.Generator().manual_seed(0)
    dim = cfg.model.decoder_dim
    decoder_conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    decoded = torch.randn(clips * frames, dim, size // 4, size // 4, generator=g)
    decoded = decoded.contiguous(memory_format=torch.channels_last).requires_grad_()
    depthwise = nn.Conv2d(144, 144, 5, stride=2, padding=2, groups=144, bias=False).to(memory_format=torch.channels_last)
    stage = torch.randn(clips * frames, 144, size // 4, size // 4, generator=g)
    stage = stage.contiguous(memory_format=torch.channels_last).requires_grad_()

    video, audio, masks = make_inputs(clips, frames, size, "cpu")
    no_visible = torch.zeros_like(masks, dtype=torch.uint8)
    batch = ClipBatch(frames=(video * 255).to(torch.uint8), audio=audio, masks=masks.to(torch.uint8),
                      labelled=torch.ones(clips, frames, dtype=torch.bool), sounding=torch.ones(clips, frames, dtype=torch.bool),
                      visible=no_visible, has_visible=torch.zeros(clips, dtype=torch.bool),
                      subset=["s4"] * clips, clip_id=[f"synthetic{i}" for i in range(clips)])
    def train_steps(bf16: bool, decoder_bf16: bool) -> Callable[[], None]:
        torch.manual_seed(0)  # a model and optimizer each, as a training in one mode would have
        model = build_model(cfg).train()
        model.cpu_bf16_decoder = decoder_bf16
        optimizer = make_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(10, 10_000))
        return lambda: train_step(model, batch, optimizer, scheduler, cfg, 0.5, bf16, "cpu_bf16")

    return {
        f"train step ({clips} clips x {frames} frames at {size} px)":
            {"fp32": train_steps(False, False), "bf16": train_steps(True, False),
             "bf16 decoder side": train_steps(False, True)},
        f"decoder conv 3x3, {dim} channels, {clips * frames} x {size // 4} px, fwd+bwd":
            {"fp32": conv_pass(decoder_conv, decoded, False), "bf16": conv_pass(decoder_conv, decoded, True)},
        f"depthwise conv 5x5 stride 2, 144 channels, {clips * frames} x {size // 4} px, fwd+bwd":
            {"fp32": conv_pass(depthwise, stage, False), "bf16": conv_pass(depthwise, stage, True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_config(args.params)  # the ImageNet weights, as the train stage starts from (`dvc repro weights`)
    seconds = interleaved_medians(works(cfg), args.rounds)
    result = {
        "benchmark": "cpu_bf16", "device": device_label("cpu"), "cpus": os.cpu_count(), "native_bf16": native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), **vars(args),
        "seconds": seconds,
    }
    write_results("cpu_bf16", result, render(result), "cpu", False)


def render(result: dict) -> str:
    native = "native bf16 (AVX512-BF16 or AMX)" if result["native_bf16"] else "no native bf16 (emulated)"
    lines = [f"# bf16 autocast on the CPU against fp32 ({result['device']}, {result['cpu_capability']}, {native}, "
             f"median of {result['rounds']} interleaved rounds)", "",
             "| work | in | fp32 s | s | x fp32 |", "|---|---|---|---|---|"]
    for work, times in result["seconds"].items():
        for precision, seconds in times.items():
            if precision != "fp32":
                lines.append(f"| {work} | {precision} | {times['fp32']} | {seconds} | {seconds / times['fp32']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
