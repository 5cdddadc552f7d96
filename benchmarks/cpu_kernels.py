"""Three kernel choices of the model and the test-time filter, each against what it replaced.

  group norm          the mask refiner's 16-channel group norms (`decoder.GroupNorm`): the
                      channels-last input copied to NCHW first, against PyTorch's channels-last
                      kernel (`narrow_channels = 0`); forward + backward at the refiner's size
  temporal attention  UE's attention across frames (`ue.TemporalAttention`): two einsums on the
                      (B, T, H, W, C) view, against `scaled_dot_product_attention` on a
                      (B, H, W, heads, T, d) copy (the code before); forward + backward
  guided filter       the test-time guided filter (`inference.guided_logits`): kornia's window
                      means as two 1-D passes (`separable=True`), against the 2-D window
  train step          the default model's whole step (forward, losses, backward, AdamW) with the
                      first two choices, against the model with both replaced

Each pair runs in interleaved rounds in one process (medians), so the ratio compares like with
like on whatever machine runs it. First the two sides' results are compared (the input's gradient
for forward + backward, the filtered maps) and the largest difference recorded. Writes
benchmarks/results/cpu_kernels.{json,md}.

    python benchmarks/cpu_kernels.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.filters import guided_blur
from memory_format import interleaved_medians  # benchmarks/memory_format.py
from model_cost import device_label, make_inputs, write_results  # benchmarks/model_cost.py

from avs.config import load_config
from avs.model import build_model, compute_losses
from avs.model.decoder import GroupNorm
from avs.model.ue import TemporalAttention
from avs.train.step import freeze_audio_encoder, make_optimizer, set_training_mode


def sdpa_temporal_attention(self: TemporalAttention, features: torch.Tensor) -> torch.Tensor:
    """TemporalAttention.forward before cpu_kernels: SDPA on a (B, H, W, heads, T, d) copy."""
    t, c = features.shape[1:3]
    x = features.permute(0, 3, 4, 1, 2)  # (B, H, W, T, C)
    qkv = self.qkv(self.norm(x + self.position[:t])).unflatten(-1, (3, self.num_heads, c // self.num_heads))
    q, k, v = qkv.movedim(-3, 0).transpose(-2, -3)  # each (B, H, W, heads, T, d)
    attended = F.scaled_dot_product_attention(q, k, v).transpose(-2, -3).flatten(-2)  # (B, H, W, T, C)
    return (x + self.out(attended)).permute(0, 3, 4, 1, 2)


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    """The same model with PyTorch's channels-last group norm and the SDPA temporal attention."""
    for module in model.modules():
        if isinstance(module, GroupNorm):
            module.narrow_channels = 0
        if isinstance(module, TemporalAttention):
            module.forward = types.MethodType(sdpa_temporal_attention, module)
    return model


def forward_backward(module: Callable, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        x.grad = None
        y = module(x)
        y.backward(torch.ones_like(y))
        return x.grad

    return run


def pairs(cfg) -> dict[str, tuple[Callable, Callable]]:
    """Each comparison as (ours, before): callables that return what is compared for equality."""
    channels_last = torch.channels_last
    g = torch.Generator().manual_seed(0)
    frames, clips = cfg.stamps.num_frames, cfg.train.batch_size
    size = cfg.train.image_size

    width = cfg.model.refine_dim
    norm = GroupNorm(min(8, width), width)
    plain = as_before(GroupNorm(min(8, width), width))
    refiner_input = torch.randn(clips * frames, width, size // 2, size // 2, generator=g)
    refiner_input = refiner_input.contiguous(memory_format=channels_last).requires_grad_()

    shape = {"dim": cfg.model.decoder_dim, "num_heads": cfg.model.ue.heads, "max_frames": cfg.model.ue.max_frames}
    attention, reference = TemporalAttention(**shape), as_before(TemporalAttention(**shape))
    reference.load_state_dict(attention.state_dict())
    decoded = torch.randn(clips * frames, cfg.model.decoder_dim, size // 4, size // 4, generator=g)
    decoded = decoded.contiguous(memory_format=channels_last).unflatten(0, (clips, frames)).requires_grad_()

    test_size = cfg.evaluate.image_size or size
    guide = torch.rand(clips * frames, 3, test_size, test_size, generator=g)
    probs = torch.sigmoid(3 * torch.randn(clips * frames, 2, test_size, test_size, generator=g))
    kernel, eps = cfg.evaluate.guided_kernel, cfg.evaluate.guided_eps

    models = {}
    batch = make_inputs(clips, frames, size, "cpu")
    labelled = torch.ones(batch[2].shape[:2], dtype=torch.bool)
    for name in ("ours", "before"):
        torch.manual_seed(0)
        model = build_model(cfg) if name == "ours" else as_before(build_model(cfg))
        freeze_audio_encoder(model)  # the default's aisfx is frozen, as in the train stage
        models[name] = (model, make_optimizer(model, cfg))

    def train_step(name: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            model, optimizer = models[name]
            set_training_mode(model, frozen_audio=True)
            losses = compute_losses(model(*batch[:2]), batch[2], labelled, cfg.loss, 5.0)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            return losses["total"].detach()

        return run

    return {
        f"group norm ({width} channels, {clips * frames} x {size // 2} px, fwd+bwd)": (
            forward_backward(norm, refiner_input),
            forward_backward(plain, refiner_input),
        ),
        f"temporal attention ({clips} x {frames} frames of {size // 4} px, fwd+bwd)": (
            forward_backward(attention, decoded),
            forward_backward(reference, decoded),
        ),
        f"guided filter ({clips * frames} frames at {test_size} px, window {kernel})": (
            lambda: guided_blur(guide, probs, kernel, eps, separable=True),
            lambda: guided_blur(guide, probs, kernel, eps),
        ),
        f"train step ({clips} clips x {frames} frames at {size} px)": (train_step("ours"), train_step("before")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_config(args.params, ["model.backbone_weights=null"])  # random weights: timings do not depend on them
    works = {work: {"ours": ours, "before": before} for work, (ours, before) in pairs(cfg).items()}
    differences = {
        work: (fns["ours"]() - fns["before"]()).abs().max().item()
        for work, fns in works.items()
        if not work.startswith("train step")
    }  # two steps of one model from one seed agree only up to the first update
    seconds = interleaved_medians(works, args.rounds)
    result = {
        "benchmark": "cpu_kernels",
        "device": device_label("cpu"),
        "cpus": os.cpu_count(),
        **vars(args),
        "seconds": seconds,
        "max_abs_difference": differences,
    }
    write_results("cpu_kernels", result, render(result), "cpu", False)


def render(result: dict) -> str:
    lines = [
        f"# Kernel choices against what they replaced ({result['device']}, fp32, median of {result['rounds']} "
        "interleaved rounds)",
        "",
        "| work | ours s | before s | ours / before | max abs difference |",
        "|---|---|---|---|---|",
    ]
    for work, times in result["seconds"].items():
        difference = result["max_abs_difference"].get(work)
        lines.append(
            f"| {work} | {times['ours']} | {times['before']} | {times['ours'] / times['before']:.2f} | "
            f"{'-' if difference is None else f'{difference:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
