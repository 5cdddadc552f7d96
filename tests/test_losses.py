"""Loss terms against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from avs.model.ama import Alignment
from avs.model.losses import (
    IGNORE,
    binding_loss,
    contrastive_loss,
    evidential_loss,
    mask_positives,
    relevance_gap,
    response_positives,
    segmentation_loss,
)


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
        features=torch.zeros(1, 2, 2, 2),
        relevance=torch.zeros(groups.shape[:2]),
        groups=groups,
        audio=torch.tensor([audio]),
        assignment=torch.tensor([[0, 0, 1, 1]]),
        occupied=occupied,
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


def test_response_positives_are_the_groups_above_their_frames_mean():
    aligned = _alignment([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], occupied=[True, True, False])
    aligned.relevance = torch.tensor([[0.52, 0.50, 0.99]])  # the empty group counts for nothing
    assert response_positives(aligned).tolist() == [[True, False, False]]
    aligned.relevance = torch.tensor([[0.5, 0.5, 0.5]])  # all equal: no positive, the frame is skipped
    assert response_positives(aligned).tolist() == [[False, False, False]]


def test_contrastive_loss_is_positive_and_trains_the_audio_and_ama():
    """On frames with mixed responses (r_p near 0.5, as at initialisation) the loss is > 0 and its
    gradient reaches the audio projection and AMA's query and key."""
    from avs.model.ama import AudioGuidedAlignment

    torch.manual_seed(0)
    ama = AudioGuidedAlignment(channels=48, dim=32, audio_dim=16, num_groups=8, num_heads=4, knn=5, grouping_tokens=64)
    aligned = ama(torch.randn(4, 48, 8, 8), torch.randn(4, 16))
    positive = response_positives(aligned)
    assert positive.any(-1).all() and (~positive & aligned.occupied).any(-1).all()
    loss = contrastive_loss(aligned, positive, tau=0.07)
    assert loss.item() > 0.1
    loss.backward()
    for name in ("audio_proj", "query_audio", "key"):
        grad = getattr(ama, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_relevance_gap_is_on_object_minus_elsewhere():
    aligned = _alignment([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])  # top row of the 2x2 grid is group 0
    aligned.relevance = torch.tensor([[0.7, 0.4]])
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :2] = 1
    assert relevance_gap({1: aligned}, masks, torch.tensor([True])).item() == pytest.approx(0.3)
    assert math.isnan(relevance_gap({1: aligned}, masks, torch.tensor([False])).item())  # no labelled frame
    assert math.isnan(relevance_gap({1: aligned}, torch.zeros(1, 4, 4, dtype=torch.long), torch.tensor([True])).item())


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


def _binding_case():
    """Two clips of one frame each, 2x2 pixels; the sounding pixel's feature equals the audio."""
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pixels = torch.zeros(2, 2, 2, 2)
    pixels[0, :, 0, 0] = audio[0]  # clip 0: top-left sounds
    pixels[1, :, 1, 1] = audio[1]  # clip 1: bottom-right sounds
    pixels[0, :, 1, 1] = audio[1]  # a silent look-alike of clip 1's object in clip 0
    masks = torch.zeros(2, 2, 2, dtype=torch.long)
    masks[0, 0, 0] = masks[1, 1, 1] = 1
    return audio, pixels, masks, torch.ones(2, dtype=torch.bool), torch.tensor([0, 1])


def test_binding_loss_prefers_the_right_pairing():
    audio, pixels, masks, labelled, clip = _binding_case()
    right = binding_loss(audio, pixels, masks, labelled, clip, tau=0.1)
    swapped = binding_loss(audio.flip(0), pixels, masks, labelled, clip, tau=0.1)
    assert right < 0.1 < swapped
    # the silent object is a negative within the frame: the more it matches the audio, the more it costs
    confusable = pixels.clone()
    confusable[0, :, 1, 1] = torch.tensor([1.0, 0.5])
    assert binding_loss(audio, confusable, masks, labelled, clip, tau=0.1) > right + 0.05


def test_binding_loss_skips_unlabelled_and_empty_frames_and_same_clip_negatives():
    audio, pixels, masks, labelled, clip = _binding_case()
    # one clip only: no "across" term, the "within" term alone
    within_only = binding_loss(audio, pixels, masks, labelled, torch.tensor([0, 0]), tau=0.1)
    first = binding_loss(audio[:1], pixels[:1], masks[:1], labelled[:1], clip[:1], tau=0.1)
    second = binding_loss(audio[1:], pixels[1:], masks[1:], labelled[1:], clip[1:], tau=0.1)
    assert within_only.item() == pytest.approx((first + second).item() / 2, rel=1e-5)
    # frame 1 unlabelled or empty: it is left out entirely
    for masks_, labelled_ in (
        (masks, torch.tensor([True, False])),
        (masks * torch.tensor([1, 0])[:, None, None], labelled),
    ):
        assert binding_loss(audio, pixels, masks_, labelled_, clip, tau=0.1).item() == pytest.approx(
            first.item(), rel=1e-5
        )
    pixels.requires_grad_(True)
    none = binding_loss(audio, pixels, masks, torch.tensor([False, False]), clip, tau=0.1)
    none.backward()
    assert none.item() == 0 and pixels.grad is not None


def test_validation_records_no_gradients():
    from avs.data.batch import ClipBatch

    sounding = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    sounding[:, :, :4] = 1
    batch = ClipBatch(
        frames=torch.zeros(2, 3, 3, 8, 8, dtype=torch.uint8),
        audio=torch.zeros(2, 3, 16000),
        masks=sounding,
        labelled=torch.tensor([[True, True, False]] * 2),
        sounding=torch.ones(2, 3, dtype=torch.bool),
        visible=sounding.clone(),
        has_visible=torch.tensor([True, True]),
        subset=["ms3", "ms3"],
        clip_id=["a", "b"],
    )

    # (its no_grad decorator once slipped onto another function)
    from avs.train.step import validate

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.grad_enabled = []

        def forward(self, frames, audio):
            self.grad_enabled.append(torch.is_grad_enabled())
            return {"logits": torch.zeros(*frames.shape[:2], 1, *frames.shape[-2:])}

    model = Recorder()
    results = validate(model, [batch], torch.device("cpu"), use_bf16=False)
    assert model.grad_enabled == [False] and 0.0 <= results["val/J"] <= 1.0


def test_seg_raw_trains_the_raw_logits_where_uncertainty_mutes_the_final_ones():
    from avs.config import LossConfig
    from avs.model.losses import compute_losses
    from avs.model.ue import down_weighted_logits

    b, t, size = 1, 2, 8
    masks = torch.zeros(b, t, size, size, dtype=torch.long)
    masks[..., 2:5, 2:6] = 1
    labelled = torch.ones(b, t, dtype=torch.bool)
    raw = torch.zeros(b, t, 1, size, size, requires_grad=True)
    evidence = torch.zeros(b, t, 2, size, size)  # total uncertainty: p' = (1 - u) sigmoid(m) = 0 whatever m is

    def outputs() -> dict:
        return {
            "logits": down_weighted_logits(raw, evidence),
            "mask_logits": raw,
            "evidence": evidence,
            "alignments": {},
            "binding": None,
        }

    terms = compute_losses(outputs(), masks, labelled, LossConfig(lambda_unc=0.0, seg_raw=0.0))
    assert "seg_raw" not in terms
    grad = torch.autograd.grad(terms["total"], raw)[0]
    # outside the object p' is 0 whatever m is: m gets nothing there through p' (inside, the
    # BCE's -log p' = -log(1 - u) - log sigmoid(m) still raises m)
    assert grad[masks[:, :, None] == 0].abs().max() < 1e-20 and grad[masks[:, :, None] == 1].max() < 0
    terms = compute_losses(outputs(), masks, labelled, LossConfig(lambda_unc=0.0, seg_raw=0.5))
    seg = segmentation_loss(raw.flatten(0, 1), masks.flatten(0, 1))
    expected = 5 * seg["bce"] + 5 * seg["dice"] + 2 * seg["iou"]
    assert terms["seg_raw"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["total"].item() == pytest.approx(
        terms["bce"].item() * 5 + terms["dice"].item() * 5 + terms["iou"].item() * 2 + 0.5 * expected.item(), rel=1e-6
    )
    grad = torch.autograd.grad(terms["total"], raw)[0]
    assert (
        grad[masks[:, :, None] == 1].max() < 0 and grad[masks[:, :, None] == 0].min() > 0
    )  # raised inside, lowered outside
