"""FPN-style decoder: the four stage outputs fused at 1/4 scale (METHOD.md, Decoder [ours])."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(min(8, out_channels), out_channels),
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
