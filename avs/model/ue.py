"""UE: temporal attention and the evidential (Dirichlet) head (METHOD.md, UE steps 1-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalAttention(nn.Module):
    """Per-location self-attention across a clip's frames, with a learned frame-position embedding.

    Pre-norm multi-head attention over the T frames at every (h, w), with a residual. Written
    with one qkv projection and two einsums on the (B, T, H, W, C) view of channels-last frames:
    with T = 5 the attention matrices are tiny and the cost is in moving the H*W*T tokens, so
    this layout avoids the copies that `nn.MultiheadAttention` or `scaled_dot_product_attention`
    need (their (..., T, d) layout): 13 % less time forward + backward on 2 CPU cores than the
    latter (benchmarks/results/cpu_kernels.md).
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
        d = c // self.num_heads
        x = features.permute(0, 1, 3, 4, 2)  # (B, T, H, W, C): no copy for channels-last frames
        q, k, v = self.qkv(self.norm(x + self.position[:t, None, None])).unflatten(-1, (3, self.num_heads, d)).unbind(-3)
        scores = torch.einsum("bthwnd,bshwnd->bhwnts", q * d ** -0.5, k)  # (B, H, W, heads, T, T)
        attended = torch.einsum("bhwnts,bshwnd->bthwnd", scores.softmax(-1), v).flatten(-2)  # (B, T, H, W, C)
        return (x + self.out(attended)).permute(0, 1, 4, 2, 3)


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
