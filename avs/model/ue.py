"""UE: temporal attention and the evidential (Dirichlet) head (METHOD.md, UE steps 1-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalAttention(nn.Module):
    """Per-location self-attention across a clip's frames, with a learned frame-position embedding."""

    def __init__(self, *, dim: int, num_heads: int, max_frames: int):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(max_frames, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, T, C, H, W). Returns: the same shape."""
        b, t, c, h, w = features.shape
        if t > self.position.shape[0]:
            raise ValueError(f"clip of {t} frames is longer than model.ue.max_frames = {self.position.shape[0]}")
        sequence = features.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)  # (B*H*W, T, C)
        query = self.norm(sequence + self.position[:t])
        sequence = sequence + self.attention(query, query, query, need_weights=False)[0]
        return sequence.reshape(b, h, w, t, c).permute(0, 3, 4, 1, 2)


class EvidentialHead(nn.Module):
    """Evidence e = softplus(conv(temporal(F))) for K classes (Sensoy et al., 2018)."""

    def __init__(self, *, dim: int, num_classes: int, num_heads: int, max_frames: int):
        super().__init__()
        self.temporal = TemporalAttention(dim=dim, num_heads=num_heads, max_frames=max_frames)
        self.evidence = nn.Conv2d(dim, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, T, C, H, W). Returns: evidence (B, T, K, H, W) >= 0."""
        x = self.temporal(features)
        return F.softplus(self.evidence(x.flatten(0, 1))).unflatten(0, x.shape[:2])


def dirichlet_uncertainty(evidence: torch.Tensor, dim: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = e + 1 and u = K / S with S = sum_k alpha_k; u is in (0, 1], 1 where e = 0.

    Returns:
        alpha (same shape as evidence) and u (the class dimension removed).
    """
    alpha = evidence + 1.0
    return alpha, evidence.shape[dim] / alpha.sum(dim=dim)
