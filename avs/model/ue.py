"""UE: temporal attention and the evidential (Dirichlet) head (METHOD.md, UE steps 1-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalAttention(nn.Module):
    """Per-location self-attention across a clip's frames, with a learned frame-position embedding.

    Pre-norm multi-head attention over the T frames at every (h, w), with a residual. Written
    with one qkv projection and `scaled_dot_product_attention` on a channels-last view: at
    H*W locations of T = 5 frames this is faster on CPU than `nn.MultiheadAttention`
    (benchmarks/results/model_cost.md).
    """

    def __init__(self, *, dim: int, num_heads: int, max_frames: int):
        super().__init__()
        self.num_heads = num_heads
        self.position = nn.Parameter(torch.zeros(max_frames, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, T, C, H, W). Returns: the same shape."""
        t, c = features.shape[1:3]
        if t > self.position.shape[0]:
            raise ValueError(f"clip of {t} frames is longer than model.ue.max_frames = {self.position.shape[0]}")
        x = features.permute(0, 3, 4, 1, 2)  # (B, H, W, T, C)
        qkv = self.qkv(self.norm(x + self.position[:t])).unflatten(-1, (3, self.num_heads, c // self.num_heads))
        q, k, v = qkv.movedim(-3, 0).transpose(-2, -3)  # each (B, H, W, heads, T, d)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(-2, -3).flatten(-2)  # (B, H, W, T, C)
        return (x + self.out(attended)).permute(0, 3, 4, 1, 2)


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
