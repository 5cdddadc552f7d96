"""AMA: audio-guided modality alignment after one encoder stage (METHOD.md, AMA steps 1-3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avs.model.dpc_knn import dpc_knn, nearest_centre, pairwise_distances


@dataclass
class Alignment:
    """One stage's AMA output; the tensors after `features` are the contrastive loss's inputs."""

    features: torch.Tensor  # (N, C, H, W) tokens after the audio-guided update
    relevance: torch.Tensor  # (N, P) r_p in (0, 1)
    groups: torch.Tensor  # (N, P, D) consolidated group features g_p at AMA's width D
    audio: torch.Tensor  # (N, D) the audio embedding projected to AMA's width
    assignment: torch.Tensor  # (N, H*W) group index of every token
    occupied: torch.Tensor  # (N, P) bool: the group has at least one token
    compact: torch.Tensor  # (N, D) z = sum_p softmax_p(r) g_p


@torch.no_grad()
def group_tokens(
    tokens: torch.Tensor, size: tuple[int, int], num_groups: int, knn: int, max_tokens: int
) -> torch.Tensor:
    """DPC-KNN groups for every frame, found on a pooled copy when there are too many tokens.

    DPC-KNN costs O(N^2) per frame, which at the stride-4 stage (N = 56 * 56 at 224 px) is
    slower than the backbone itself. [ours] Above `max_tokens` the centres are found on the
    tokens average-pooled by the smallest factor that fits, and every full-resolution token
    then joins its nearest centre (O(N * P)). Groups may then be empty; callers handle that.

    Args:
        tokens: (N, L, C) normalised tokens, L = H * W.
        size: (H, W).

    Returns:
        (N, L) group index of every token.
    """
    height, width = size
    count = height * width
    num_groups = min(num_groups, count)
    if count <= max_tokens:
        return dpc_knn(tokens, num_groups, knn).assignment
    factor = math.ceil(math.sqrt(count / max_tokens))
    grid = tokens.transpose(1, 2).unflatten(2, (height, width))  # (N, C, H, W)
    pooled = F.avg_pool2d(grid, factor, ceil_mode=True)
    pooled_width = pooled.shape[-1]
    pooled = pooled.flatten(2).transpose(1, 2)  # (N, L', C)
    centres = dpc_knn(pooled, min(num_groups, pooled.shape[1]), knn).centres  # (N, P)
    centre_features = pooled.gather(1, centres[..., None].expand(-1, -1, pooled.shape[2]))  # (N, P, C)
    # a centre's place in the full-resolution raster order: the middle of its pooled cell
    row, column = centres // pooled_width, centres % pooled_width
    centre_index = (row * factor + factor // 2).clamp(max=height - 1) * width + (column * factor + factor // 2).clamp(
        max=width - 1
    )
    to_centres = pairwise_distances(tokens.float(), centre_features.float())  # (N, L, P)
    return nearest_centre(to_centres, torch.arange(count, device=tokens.device), centre_index)


class AudioGuidedAlignment(nn.Module):
    """Group a stage's tokens, consolidate each group under audio guidance, update the tokens.

    1. DPC-KNN groups (no gradient) on layer-normalised tokens [ours: normalised, so that the
       density kernel exp(-d^2) sees distances on one scale at every stage].
    2. G^0 = member means; G <- G + MHA(G, X) where each group attends only its own tokens and
       the attention logits carry the audio term S_pi = <W_q a, W_k x_i> / sqrt(d).
    3. r_p = sigmoid(mean over heads <W_q a, W_k g_p> / sqrt(d)); X <- X + MLP(r * g) per token;
       z = sum_p softmax_p(r) g_p.
    The audio projections have no bias, so a zero audio embedding gives r_p = 0.5 for all p.

    Groups, attention and r_p work at a fixed width D = min(`dim`, C): tokens wider than D are
    projected to D after the norm, and the MLP maps back to C, so AMA's size does not grow with
    the backbone. [ours] A stage narrower than `dim` keeps its own width (no projection up).
    """

    def __init__(
        self,
        *,
        channels: int,
        dim: int,
        audio_dim: int,
        num_groups: int,
        num_heads: int,
        knn: int,
        grouping_tokens: int,
    ):
        super().__init__()
        width = min(dim, channels)
        if width % num_heads:
            raise ValueError(
                f"AMA width {width} (min of model.ama.dim and the stage's {channels} channels) "
                f"is not divisible by {num_heads} heads"
            )
        self.width = width
        self.num_groups, self.num_heads, self.knn, self.grouping_tokens = num_groups, num_heads, knn, grouping_tokens
        self.audio_proj = nn.Linear(audio_dim, width, bias=False)
        self.norm = nn.LayerNorm(channels)
        self.project = nn.Linear(channels, width) if width < channels else nn.Identity()
        self.query_audio = nn.Linear(width, width, bias=False)
        self.query_group = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, channels)
        )
        # layer scale: the update starts small so a pretrained backbone's next stage is not disturbed
        self.gamma = nn.Parameter(torch.full((channels,), 0.1))

    def _consolidate(
        self,
        q_groups: torch.Tensor,
        q_audio: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """softmax(G X^T / sqrt(d) + S) X per head, each group over its own tokens only.

        Masked attention with one query per group, computed as a softmax within each group's
        segment of tokens: a token only ever meets its own group's query, so one logit per token
        and head suffices (O(L) rather than O(P * L)). tests/test_model.py checks it against the
        dense masked form.

        Args:
            q_groups: (N, P, D) group queries; q_audio: (N, D) the audio query;
            keys, values: (N, L, D); rows: (N, L) each token's group as a row of the
                (N * P) flattened groups (see `_group_rows`).

        Returns:
            (N, P, D) the attention output per group (zero for an empty group).
        """
        n, num_groups, c = q_groups.shape
        h, d = self.num_heads, c // self.num_heads
        flat_rows = rows.flatten()  # (N*L,)
        own_query = q_groups.flatten(0, 1)[flat_rows].view_as(keys) + q_audio[:, None]  # (N, L, C)
        logits = (own_query * keys).unflatten(-1, (h, d)).sum(-1).flatten(0, 1) / math.sqrt(d)  # (N*L, h)
        group_max = logits.new_full((n * num_groups, h), float("-inf"))
        group_max = group_max.scatter_reduce(0, flat_rows[:, None].expand(-1, h), logits.detach(), "amax")  # (N*P, h)
        weights = torch.exp(logits - group_max[flat_rows])  # (N*L, h)
        total = weights.new_zeros(n * num_groups, h).index_add(0, flat_rows, weights)  # (N*P, h)
        weights = weights / total[flat_rows]
        weighted = (weights[..., None] * values.flatten(0, 1).unflatten(-1, (h, d))).flatten(1)  # (N*L, C)
        # summed in the weights' dtype: under CUDA autocast exp gives float32 weights while the
        # values stay bfloat16, and index_add needs one dtype
        return weighted.new_zeros(n * num_groups, c).index_add(0, flat_rows, weighted).view(n, num_groups, c)

    def forward(self, features: torch.Tensor, audio: torch.Tensor) -> Alignment:
        """Args: features (N, C, H, W) of N frames; audio (N, A) each frame's audio embedding."""
        n, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)  # (N, L, C)
        normed = self.norm(tokens)
        assignment = group_tokens(normed.detach(), (h, w), self.num_groups, self.knn, self.grouping_tokens)
        normed = self.project(normed)  # (N, L, D)
        width = normed.shape[-1]
        # each token's group as a row of the (N * P) flattened groups: row indexing and index_add
        # are much faster on CPU than gather/scatter with an index expanded over channels
        rows = assignment + torch.arange(n, device=assignment.device)[:, None] * self.num_groups  # (N, L)
        flat_rows = rows.flatten()
        sums = normed.new_zeros(n * self.num_groups, width).index_add(0, flat_rows, normed.flatten(0, 1))
        sizes = normed.new_zeros(n * self.num_groups).index_add(0, flat_rows, normed.new_ones(flat_rows.shape))
        occupied = (sizes > 0).view(n, self.num_groups)
        initial = (sums / sizes.clamp(min=1)[:, None]).view(n, self.num_groups, width)  # (N, P, D) G^0: member means

        a = self.audio_proj(audio)  # (N, D)
        q_audio = self.query_audio(a)  # (N, D)
        keys = self.key(normed)  # (N, L, D)
        groups = initial + self.out(
            self._consolidate(self.query_group(initial), q_audio, keys, self.value(normed), rows)
        )

        head_dim = width // self.num_heads
        response = (q_audio[:, None] * self.key(groups)).unflatten(-1, (self.num_heads, head_dim)).sum(-1)  # (N, P, h)
        relevance = torch.sigmoid(response.mean(dim=-1) / math.sqrt(head_dim))  # (N, P)

        # MLP(r_g(i) * g_g(i)) is the same for every token of a group: compute it once per group
        update = self.mlp(relevance[..., None] * groups)  # (N, P, C): back to the stage's width
        tokens = tokens + self.gamma * update.flatten(0, 1)[rows]
        weights = torch.softmax(relevance.masked_fill(~occupied, float("-inf")), dim=-1)  # (N, P)
        compact = (weights[..., None] * groups).sum(dim=1)  # (N, D)
        return Alignment(
            features=tokens.transpose(1, 2).reshape(n, c, h, w),
            relevance=relevance,
            groups=groups,
            audio=a,
            assignment=assignment,
            occupied=occupied,
            compact=compact,
        )
