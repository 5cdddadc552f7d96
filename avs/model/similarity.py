"""Audio-pixel similarity: a mask logit per pixel from how well it matches the audio [ours]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class AudioPixelSimilarity(nn.Module):
    """s(x, a) = <W_a BN(a), W_v x> / sqrt(d), on the first two encoder stages' features.

    Why it exists: the FiLM audio query scales whole decoder channels, and the norm after it
    partly undoes that, so "which of two look-alikes does this sound belong to" is hard for the
    model to express; trained on that path alone it picked the sounding one of two visible
    objects at chance. A bilinear term between the audio and each pixel says it directly.

    Why the first two stages (strides 4 and 8, after their AMA): their features tell the
    sounding object from a silent look-alike better than later stages, and the similarity
    learns the binding faster on them than on the decoder's output.

    Why batch norm on the audio: embeddings of different sounds from a pretrained encoder share
    a large common component (cosine ~0.85 for aisfx); what tells them apart is small.
    """

    def __init__(self, *, audio_dim: int, stage_channels: Sequence[int], dim: int):
        super().__init__()
        self.audio_norm = nn.BatchNorm1d(audio_dim)
        self.audio_proj = nn.Linear(audio_dim, dim)
        self.pixel_proj = nn.Conv2d(sum(stage_channels[:2]), dim, 1)
        self.scale = 1 / math.sqrt(dim)

    def embed(self, features: Sequence[torch.Tensor], audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: features, finest first, (N, C_l, H/s_l, W/s_l); audio (N, A).

        Returns: audio (N, d) and pixels (N, d, H/4, W/4), projected.
        """
        fine, coarse = features[0], features[1]
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return self.audio_proj(self.audio_norm(audio)), self.pixel_proj(torch.cat([fine, coarse], dim=1))

    def forward(self, audio: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Args: the projections from `embed`. Returns: (N, 1, H/4, W/4) logits."""
        return torch.einsum("nd,ndhw->nhw", audio, pixels)[:, None] * self.scale
