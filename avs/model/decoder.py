"""FPN-style decoder: the four stage outputs fused at 1/4 scale (METHOD.md, Decoder [ours])."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` that copies a narrow channels-last input to NCHW on CPU when it will be trained.

    Why: the model is channels-last (`build_model`), and PyTorch's channels-last group norm on
    CPU is slow for few channels in training, where copying to NCHW first is cheaper; at wide
    layers, and without a graph (inference), channels-last is the faster, so it stays there
    (benchmarks/cpu_kernels.py measures both). The output is the same to float rounding.
    """

    narrow_channels = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.shape[1] <= self.narrow_channels
            and torch.is_grad_enabled()
            and not x.is_contiguous()
        ):
            x = x.contiguous()
        return super().forward(x)


def conv_norm_act(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        GroupNorm(min(8, out_channels), out_channels),
        nn.GELU(),
    )


class FPNDecoder(nn.Module):
    """Lateral 1x1 projections, a top-down pathway, and a 3x3 fusion at the finest (1/4) scale."""

    def __init__(self, *, in_channels: Sequence[int], dim: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.fuse = conv_norm_act(dim, dim)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Args: features, finest first, (N, C_l, H/s_l, W/s_l). Returns: (N, dim, H/4, W/4)."""
        x = self.lateral[-1](features[-1])
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1]):
            x = lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(x)
