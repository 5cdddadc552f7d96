"""Mask refinement at 1/2 scale from the frame itself [ours]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avs.model.decoder import GroupNorm, conv_norm_act


class MaskRefiner(nn.Module):
    """Coarse (1/4) mask logits -> 1/2-scale logits, corrected where the frame shows an edge.

    Why it exists: the embedded set's objects are small, and a mask predicted at 1/4 scale and
    upsampled cannot follow their outline (even the ground truth pooled to 1/4 and upsampled
    loses much of its J); much of the model's error is background around each object's
    outline. Two convolutions over the frame at 1/2 scale find the edges; a
    third combines them with the upsampled decoder features and coarse logits into a correction.
    The correction starts at zero (last convolution zero-initialised), so training begins from
    the coarse mask.
    """

    def __init__(self, *, decoder_dim: int, num_classes: int, dim: int):
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(3, dim, 3, stride=2, padding=1, bias=False),
            GroupNorm(min(8, dim), dim),
            nn.GELU(),
            conv_norm_act(dim, dim),
        )
        self.context = nn.Conv2d(decoder_dim, dim, 1)
        self.fuse = conv_norm_act(2 * dim + num_classes, dim)
        self.correction = nn.Conv2d(dim, num_classes, 3, padding=1)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, image: torch.Tensor, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Args: image (N, 3, H, W) normalised frames; features (N, D, H/4, W/4) the decoder's
        (audio-modulated) features; coarse (N, K, H/4, W/4) logits. Returns: (N, K, H/2, W/2) logits.
        """
        edges = self.image(image)  # (N, dim, H/2, W/2)
        size = edges.shape[-2:]
        coarse = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        context = F.interpolate(self.context(features), size=size, mode="bilinear", align_corners=False)
        return coarse + self.correction(self.fuse(torch.cat([edges, context, coarse], dim=1)))
