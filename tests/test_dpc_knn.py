"""The batched DPC-KNN against a brute-force, token-by-token reference."""

import math

import numpy as np
import pytest
import torch

from avs.model.dpc_knn import dpc_knn


def reference(x: np.ndarray, num_groups: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Straight from the formulas in METHOD.md, one token at a time (float64)."""
    n, c = x.shape
    d = np.array([[np.linalg.norm(x[i] - x[j]) / math.sqrt(c) for j in range(n)] for i in range(n)])
    rho = np.array([math.exp(-np.mean(np.sort(d[i])[:k] ** 2)) for i in range(n)])
    delta = np.empty(n)
    for i in range(n):
        higher = [d[i, j] for j in range(n) if rho[j] > rho[i]]
        delta[i] = min(higher) if higher else d[i].max()
    centres = np.argsort(-(rho * delta), kind="stable")[:num_groups]
    assignment = np.array([int(np.argmin([d[i, c_] for c_ in centres])) for i in range(n)])
    return centres, assignment


@pytest.mark.parametrize(("n", "c", "p", "k"), [(30, 8, 4, 5), (64, 16, 16, 5), (49, 3, 7, 3)])
def test_matches_reference(n, c, p, k):
    generator = torch.Generator().manual_seed(n)
    tokens = torch.randn(3, n, c, generator=generator, dtype=torch.float64)
    result = dpc_knn(tokens, p, k)
    assert result.centres.shape == (3, p) and result.assignment.shape == (3, n)
    for b in range(3):
        centres, assignment = reference(tokens[b].numpy(), p, k)
        assert sorted(result.centres[b].tolist()) == sorted(centres.tolist())
        # group indices follow the centre order; compare the partitions through the centres
        ours = result.centres[b][result.assignment[b]].numpy()
        np.testing.assert_array_equal(ours, centres[assignment])


def test_centres_join_their_own_group_and_no_gradient():
    tokens = torch.randn(2, 40, 8, requires_grad=True)
    result = dpc_knn(tokens, 6)
    for b in range(2):
        assert result.assignment[b, result.centres[b]].tolist() == list(range(6))
    assert not result.assignment.requires_grad


def test_bad_group_count():
    with pytest.raises(ValueError, match=r"num_groups must be in \[1, 10\]"):
        dpc_knn(torch.randn(1, 10, 4), 11)


def tcformer_reference(x: torch.Tensor, num_groups: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """TCFormer's `cluster_dpc_knn` (its formulas, without the density noise), one frame (N, C)."""
    dist = torch.cdist(x[None], x[None])[0] / math.sqrt(x.shape[1])
    density = (-(dist.topk(k, dim=-1, largest=False).values ** 2).mean(dim=-1)).exp()
    mask = density[None, :] > density[:, None]
    dist_max = dist.max()
    parent = (dist * mask + dist_max * ~mask).min(dim=-1).values
    centres = (parent * density).topk(num_groups).indices
    assignment = dist[centres].argmin(dim=0)
    assignment[centres] = torch.arange(num_groups)
    return centres, assignment


@pytest.mark.parametrize("seed", range(6))
def test_equals_tcformer_on_random_tokens(seed):
    tokens = torch.randn(4, 81, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    result = dpc_knn(tokens, 9, 5)
    for b in range(4):
        centres, assignment = tcformer_reference(tokens[b].float(), 9, 5)
        assert sorted(result.centres[b].tolist()) == sorted(centres.tolist())
        np.testing.assert_array_equal(result.centres[b][result.assignment[b]].numpy(), centres[assignment].numpy())


def assert_no_collapse(
    assignment: torch.Tensor, num_groups: int, largest_share: float, min_groups: int | None = None
) -> None:
    """Every frame uses at least `min_groups` (default: all P) groups and none of them holds more
    than `largest_share` of the tokens."""
    for frame in assignment:
        sizes = torch.bincount(frame, minlength=num_groups)
        assert (sizes > 0).sum().item() >= (min_groups or num_groups), sizes.tolist()
        assert sizes.max().item() <= largest_share * frame.numel(), sizes.tolist()


def test_identical_tokens_give_distinct_centres():
    """120 of a 14 x 14 frame's tokens are one repeated vector: only one of them may be a centre."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 196, 32, generator=generator)
    same = torch.randperm(196, generator=generator)[:120]
    tokens[:, same] = torch.randn(32, generator=generator)
    result = dpc_knn(tokens, 16, 5)
    for b in range(2):
        assert len(set(result.centres[b].tolist())) == 16
        assert sum(int(c) in set(same.tolist()) for c in result.centres[b]) == 1
    assert_no_collapse(result.assignment, 16, largest_share=0.66)  # the repeated tokens and a few more


def test_fully_black_frame_splits_into_bands():
    result = dpc_knn(torch.zeros(3, 196, 32), 16, 5)
    for b in range(3):
        assert len(set(result.centres[b].tolist())) == 16
    assert_no_collapse(result.assignment, 16, largest_share=0.15)


def letterboxed_stage_one(backbone: str, black: bool = False) -> tuple[torch.Tensor, tuple[int, int]]:
    """Normalised stride-4 tokens of a randomly initialised backbone on a 224 px frame with 64 px
    black bars above and below (or all black)."""
    from avs.model.encoders import build_visual_encoder

    torch.manual_seed(0)
    encoder = build_visual_encoder(backbone, None).eval()
    frame = torch.rand(1, 3, 224, 224)
    frame[..., :64, :] = 0
    frame[..., -64:, :] = 0
    if black:
        frame.zero_()
    with torch.no_grad():
        x = encoder.stages[0](encoder.normalise(frame))
    tokens = x.flatten(2).transpose(1, 2)
    return torch.nn.functional.layer_norm(tokens, tokens.shape[-1:]), tuple(x.shape[-2:])


@pytest.mark.parametrize("backbone", ["pvt_v2_b0", "resnet18"])
@pytest.mark.parametrize("black", [False, True])
def test_letterboxed_and_black_frames_keep_their_groups(backbone, black):
    """Through the pooled path the model takes at stage 1 (56 x 56 tokens > grouping_tokens).

    The backbone's zero padding makes the border tokens differ from the interior ones, so even a
    black frame is not one repeated token. A centre found on the pooled copy may win no
    full-resolution token, hence `min_groups`."""
    from avs.model.ama import group_tokens

    tokens, size = letterboxed_stage_one(backbone, black)
    assignment = group_tokens(tokens, size, num_groups=16, knn=5, max_tokens=196)
    # the bars are 4/7 of the frame; a black frame spreads over all its groups
    assert_no_collapse(assignment, 16, largest_share=0.25 if black else 0.62, min_groups=12)
