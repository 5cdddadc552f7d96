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
