"""UE: temporal attention, the evidential (Dirichlet) head and the down-weighting (METHOD.md, UE steps 1-3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TemporalAttention(nn.Module):
    """Per-location self-attention across a clip's frames, with a learned frame-position embedding.

    Pre-norm multi-head attention over the T frames at every (h, w), with a residual. Written
    with one qkv projection and two einsums on the (B, T, H, W, C) view of channels-last frames:
    with T = 5 the attention matrices are tiny and the cost is in moving the H*W*T tokens, so
    this layout avoids the copies that `nn.MultiheadAttention` or `scaled_dot_product_attention`
    need (their (..., T, d) layout); benchmarks/cpu_kernels.py compares the two.
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
        q, k, v = (
            self.qkv(self.norm(x + self.position[:t, None, None])).unflatten(-1, (3, self.num_heads, d)).unbind(-3)
        )
        scores = torch.einsum("bthwnd,bshwnd->bhwnts", q * d**-0.5, k)  # (B, H, W, heads, T, T)
        attended = torch.einsum("bhwnts,bshwnd->bthwnd", scores.softmax(-1), v).flatten(-2)  # (B, T, H, W, C)
        return (x + self.out(attended)).permute(0, 1, 4, 2, 3)


class EvidentialHead(nn.Module):
    """Evidence e = softplus(conv(F)) for K classes (Sensoy et al., 2018), from the temporally
    attended features that the mask head reads too (`temporal`, applied by the caller)."""

    def __init__(self, *, dim: int, num_classes: int, num_heads: int, max_frames: int):
        super().__init__()
        self.temporal = TemporalAttention(dim=dim, num_heads=num_heads, max_frames=max_frames)
        self.evidence = nn.Conv2d(dim, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (N, C, H, W), already through `temporal`. Returns: evidence (N, K, H, W) >= 0."""
        return F.softplus(self.evidence(features))


def dirichlet_uncertainty(evidence: torch.Tensor, dim: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = e + 1 and u = K / S with S = sum_k alpha_k; u is in (0, 1], 1 where e = 0.

    Returns:
        alpha (same shape as evidence) and u (the class dimension removed).
    """
    alpha = evidence + 1.0
    return alpha, evidence.shape[dim] / alpha.sum(dim=dim)


def down_weighted_logits(mask_logits: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """Logits of the final probabilities p', the sounding mass scaled by (1 - u) (UE step 3).

    Binary (K = 1 logit): p' = (1 - u) sigmoid(m), returned as logit(p'). AVSS (K classes,
    class 0 background): the object classes' softmax mass times (1 - u), the removed mass added
    to background, returned as log p' (its softmax is p'). Where u -> 1, p' -> "not sounding".

    Computed in log space in float32, so that it stays finite where u -> 1 or |m| is large:
    log(1 - u) = log(sum e) - log S, log u = log K - log S.

    Args:
        mask_logits: (B, T, K, H, W) m; evidence: (B, T, K_e, H, W) >= 0 (K_e = 2 binary).
    """
    m, e = mask_logits.float(), evidence.float()
    total = e.sum(dim=2, keepdim=True)  # (B, T, 1, H, W) sum of the evidence
    log_strength = torch.log(total + e.shape[2])  # log S
    log_keep = torch.log(total.clamp(min=1e-30)) - log_strength  # log(1 - u)
    log_u = math.log(e.shape[2]) - log_strength
    if m.shape[2] == 1:
        log_p = log_keep + F.logsigmoid(m)
        log_not = torch.logaddexp(F.logsigmoid(-m), log_u + F.logsigmoid(m))  # log(1 - p')
        return log_p - log_not
    log_q = m.log_softmax(dim=2)
    log_objects = log_q[:, :, 1:].logsumexp(dim=2, keepdim=True)  # log(1 - q_0)
    background = torch.logaddexp(log_q[:, :, :1], log_u + log_objects)
    return torch.cat([background, log_keep + log_q[:, :, 1:]], dim=2)
