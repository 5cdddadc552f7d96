"""DPC-KNN token grouping (METHOD.md, AMA step 1; formulas after TCFormer's token clustering).

For each frame's tokens X (N x C):
  d_ij    = ||x_i - x_j||_2 / sqrt(C)
  rho_i   = exp(-(1/k) * sum_{j in kNN(i)} d_ij^2)   (the k nearest include i itself, as in TCFormer)
  delta_i = min_{j denser than i} d_ij, or max_j d_ij for the densest token
  centres = the P tokens with the largest rho_i * delta_i; every token joins its nearest centre.

Ties are broken by token index, where TCFormer adds random noise to the density:
  - j is denser than i when rho_j > rho_i, or rho_j == rho_i and j < i. Among identical tokens
    (black bars, flat regions) only the first is a density peak; the others are at distance 0
    from a denser token, so they score 0 and cannot all become centres.
  - Equal scores (a frame of identical tokens scores 0 everywhere) are ordered by a fixed
    golden-ratio permutation of the indices, which spreads the tied centres across the frame.
  - A token equally near several centres joins the one nearest in index, so a flat frame splits
    into bands instead of one group.
Distances below `SAME` times the tokens' RMS count as 0: the matrix-product form of `cdist`
leaves a rounding residue between identical tokens that would otherwise decide the ties.
Batched over all frames at once, with no Python loop over tokens or groups, and without
gradient: the grouping is a discrete choice; gradients flow through the features it groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SAME = 1e-3  # distances (in units of the tokens' RMS) at or below this are ties
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass
class Grouping:
    centres: torch.Tensor  # (B, P) token indices of the group centres, by decreasing score
    assignment: torch.Tensor  # (B, N) group index in [0, P) of every token


def pairwise_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, N, C), (B, M, C) -> (B, N, M) distances / sqrt(C), with rounding residue snapped to 0."""
    channels = x.shape[-1]
    dist = torch.cdist(x, y) / math.sqrt(channels)
    scale = x.square().mean(dim=(1, 2)).sqrt()[:, None, None]  # (B, 1, 1) the frame's token RMS
    return dist.masked_fill(dist <= SAME * scale, 0.0)


def nearest_centre(to_centres: torch.Tensor, token_index: torch.Tensor, centre_index: torch.Tensor) -> torch.Tensor:
    """Each token's nearest centre, ties going to the centre nearest in index.

    Args:
        to_centres: (B, N, P) distances; token_index: (N,); centre_index: (B, P), in the same
            index space as `token_index` (raster order of the frame).

    Returns:
        (B, N) group index in [0, P).
    """
    closest = to_centres == to_centres.min(dim=-1, keepdim=True).values  # (B, N, P)
    gap = (token_index[None, :, None] - centre_index[:, None, :]).abs().float()  # (B, N, P)
    return gap.masked_fill(~closest, float("inf")).argmin(dim=-1)


def tie_order(count: int, device: torch.device) -> torch.Tensor:
    """(count,) a fixed permutation of the indices whose every prefix is spread across [0, count)."""
    return torch.argsort(torch.frac(torch.arange(count, device=device, dtype=torch.float64) * _GOLDEN), descending=True)


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
    batch, count, _ = tokens.shape
    if not 1 <= num_groups <= count:
        raise ValueError(f"num_groups must be in [1, {count}], got {num_groups}")
    x = tokens.float()
    index = torch.arange(count, device=tokens.device)
    dist = pairwise_distances(x, x)  # (B, N, N)
    nearest = dist.topk(min(k, count), dim=-1, largest=False).values  # (B, N, k)
    density = torch.exp(-nearest.square().mean(dim=-1))  # (B, N)
    # [b, i, j]: token j is denser than token i (equal densities: the lower index is denser)
    rho_i, rho_j = density[:, :, None], density[:, None, :]
    denser = (rho_j > rho_i) | ((rho_j == rho_i) & (index[None, None, :] < index[None, :, None]))
    to_denser = dist.masked_fill(~denser, float("inf")).min(dim=-1).values  # (B, N)
    peak = torch.isinf(to_denser)  # no denser token: use the farthest distance instead
    delta = torch.where(peak, dist.max(dim=-1).values, to_denser)
    score = density * delta
    # the P best scores; equal scores in the fixed spread-out order (stable sort after the permutation)
    order = tie_order(count, tokens.device)
    ranked = torch.sort(score[:, order], dim=-1, descending=True, stable=True).indices[:, :num_groups]
    centres = order[ranked]  # (B, P)
    to_centres = dist.gather(2, centres[:, None, :].expand(batch, count, num_groups))  # (B, N, P)
    assignment = nearest_centre(to_centres, index, centres)
    # a centre always belongs to its own group, even when another centre is equally close
    assignment.scatter_(1, centres, torch.arange(num_groups, device=tokens.device).expand(batch, -1))
    return Grouping(centres, assignment)
