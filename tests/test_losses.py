"""Loss terms against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from avs.model.ama import Alignment
from avs.model.losses import IGNORE, contrastive_loss, evidential_loss, mask_positives, segmentation_loss


def test_evidential_loss_digamma_form_and_kl():
    evidence = torch.tensor([1.0, 0.0])[None, :, None, None].repeat(1, 1, 1, 2)  # (1, K=2, 1, 2): alpha = (2, 1)
    masks = torch.tensor([[[0, 1]]])
    # label 0: psi(3) - psi(2) = 0.5, and alpha~ = (1, 1) has no KL
    # label 1: psi(3) - psi(1) = 1.5; alpha~ = (2, 1): KL = ln 2 - 0.5
    assert evidential_loss(evidence, masks, kl_weight=0.0).item() == pytest.approx((0.5 + 1.5) / 2, abs=1e-5)
    expected = (0.5 + 1.5 + math.log(2) - 0.5) / 2
    assert evidential_loss(evidence, masks, kl_weight=1.0).item() == pytest.approx(expected, abs=1e-5)
    masks[0, 0, 1] = IGNORE
    assert evidential_loss(evidence, masks, kl_weight=1.0).item() == pytest.approx(0.5, abs=1e-5)


def _alignment(audio, groups, occupied=None) -> Alignment:
    groups = torch.tensor(groups)[None]
    occupied = torch.ones(groups.shape[:2], dtype=torch.bool) if occupied is None else torch.tensor([occupied])
    return Alignment(
        features=torch.zeros(1, 2, 2, 2), relevance=torch.zeros(groups.shape[:2]), groups=groups,
        audio=torch.tensor([audio]), assignment=torch.tensor([[0, 0, 1, 1]]), occupied=occupied,
        compact=torch.zeros(1, 2),
    )


def test_contrastive_loss_is_infonce_over_groups():
    aligned = _alignment([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0]])  # cos = 1 and 0
    loss = contrastive_loss(aligned, torch.tensor([[True, False]]), tau=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    loss = contrastive_loss(aligned, torch.tensor([[True, False]]), tau=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # no positive: the frame is skipped; an empty group is neither positive nor in the denominator
    assert contrastive_loss(aligned, torch.tensor([[False, False]]), tau=1.0).item() == 0
    empty = _alignment([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0]], occupied=[True, False])
    assert contrastive_loss(empty, torch.tensor([[True, True]]), tau=1.0).item() == pytest.approx(0, abs=1e-6)


def test_mask_positives_are_groups_mostly_inside_the_mask():
    aligned = _alignment([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])  # top row of the 2x2 grid is group 0
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :2] = 1
    assert mask_positives(aligned, masks, torch.tensor([True])).tolist() == [[True, False]]
    assert mask_positives(aligned, masks, torch.tensor([False])).tolist() == [[False, False]]
    masks[0, :2, :2] = 0  # group 0 is now half inside: still a positive (>= 50 %)
    assert mask_positives(aligned, masks, torch.tensor([True])).tolist() == [[True, False]]


def test_segmentation_losses_vanish_for_a_confident_correct_mask():
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, 2:5, 2:6] = 1
    perfect = (masks.float() * 2 - 1)[:, None] * 50
    terms = segmentation_loss(perfect, masks)
    assert set(terms) == {"bce", "dice", "iou"} and all(v.item() < 1e-6 for v in terms.values())
    wrong = segmentation_loss(-perfect, masks)
    assert wrong["bce"].item() > 10 and wrong["dice"].item() > 0.9 and wrong["iou"].item() > 0.9
    classes = torch.randint(0, 5, (2, 8, 8))
    logits = torch.nn.functional.one_hot(classes, 5).permute(0, 3, 1, 2).float() * 50
    terms = segmentation_loss(logits, classes)
    assert set(terms) == {"ce", "dice"} and all(v.item() < 1e-6 for v in terms.values())
