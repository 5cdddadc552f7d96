"""DPC-KNN token grouping (METHOD.md, AMA step 1; formulas after TCFormer's token clustering).

For each frame's tokens X (N x C):
  d_ij    = ||x_i - x_j||_2 / sqrt(C)
  rho_i   = exp(-(1/k) * sum_{j in kNN(i)} d_ij^2)   (the k nearest include i itself, as in TCFormer)
  delta_i = min_{j: rho_j > rho_i} d_ij, or max_j d_ij for a token no other token is denser than
  centres = the P tokens with the largest rho_i * delta_i; every token joins its nearest centre.
Batched over all frames at once, with no Python loop over tokens or groups, and without
gradient: the grouping is a discrete choice; gradients flow through the features it groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Grouping:
    centres: torch.Tensor  # (B, P) token indices of the group centres, by decreasing score
    assignment: torch.Tensor  # (B, N) group index in [0, P) of every token


@torch.no_grad()
def dpc_knn(tokens: torch.Tensor, num_groups: int, k: int = 5) -> Grouping:
    """Group each frame's tokens around density peaks.

    Args:
        tokens: (B, N, C) features; B is every frame of the batch (B * T clips' frames).
        num_groups: P, the number of groups (at most N).
        k: neighbours used for the density.

    Returns:
        The centres and each token's group.
    """
    batch, count, channels = tokens.shape
    if not 1 <= num_groups <= count:
        raise ValueError(f"num_groups must be in [1, {count}], got {num_groups}")
    x = tokens.float()
    dist = torch.cdist(x, x) / math.sqrt(channels)  # (B, N, N)
    nearest = dist.topk(min(k, count), dim=-1, largest=False).values  # (B, N, k)
    density = torch.exp(-nearest.square().mean(dim=-1))  # (B, N)
    denser = density[:, None, :] > density[:, :, None]  # (B, N, N): [b, i, j] = rho_j > rho_i
    to_denser = dist.masked_fill(~denser, float("inf")).min(dim=-1).values  # (B, N)
    peak = torch.isinf(to_denser)  # no denser token: use the farthest distance instead
    delta = torch.where(peak, dist.max(dim=-1).values, to_denser)
    centres = (density * delta).topk(num_groups, dim=-1).indices  # (B, P)
    to_centres = dist.gather(2, centres[:, None, :].expand(batch, count, num_groups))  # (B, N, P)
    assignment = to_centres.argmin(dim=-1)  # (B, N)
    # a centre always belongs to its own group, even when another centre is equally close
    assignment.scatter_(1, centres, torch.arange(num_groups, device=tokens.device).expand(batch, -1))
    return Grouping(centres, assignment)
