"""Calibration statistics against direct computations (scikit-learn for the AUROC)."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from avs.eval.calibration import CalibrationMeter
from avs.eval.plots import plot_reliability


def binary(p: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - p, p], 1)


def test_hand_computed_binary_case():
    p = torch.tensor([[[0.9, 0.2], [0.6, 0.1]]])  # one 2x2 frame
    y = torch.tensor([[[1, 0], [0, 1]]])
    meter = CalibrationMeter()
    meter.update(binary(p), y)
    scores = meter.compute()
    # confidences 0.9 (right), 0.8 (right), 0.6 (wrong), 0.9 (wrong): bins by 1/15
    # bin [0.8667, 0.9333): 0.9, 0.9 -> acc 1/2, conf 0.9; bin [0.8, 0.8667): acc 1, conf 0.8; bin [0.6, 0.667): acc 0
    expected_ece = (2 * abs(0.9 - 0.5) + abs(0.8 - 1) + abs(0.6 - 0)) / 4
    assert scores["ece"] == pytest.approx(expected_ece)
    assert scores["brier"] == pytest.approx((0.1**2 + 0.2**2 + 0.6**2 + 0.9**2) / 4)
    assert scores["nll"] == pytest.approx(-(torch.tensor([0.9, 0.8, 0.4, 0.1]).log().mean().item()))
    assert scores["error_rate"] == pytest.approx(0.5)
    assert scores["auroc_u"] != scores["auroc_u"]  # no uncertainty given: NaN


def test_auroc_matches_sklearn_and_batching_does_not_matter():
    torch.manual_seed(0)
    p = torch.rand(6, 8, 8)
    y = (torch.rand(6, 8, 8) < p).long()
    errors = (p > 0.5).long() != y
    u = (errors.double() * 0.3 + torch.rand(6, 8, 8) * 0.7).clamp(0, 1)
    whole = CalibrationMeter()
    whole.update(binary(p), y, u)
    parts = CalibrationMeter()
    for i in range(6):
        part = CalibrationMeter()
        part.update(binary(p[i : i + 1]), y[i : i + 1], u[i : i + 1])
        parts.merge(part.state())
    expected = roc_auc_score(errors.flatten().numpy(), u.flatten().numpy())
    assert whole.compute()["auroc_u"] == pytest.approx(expected, abs=2e-3)  # u binned in 1/1000
    assert parts.compute() == pytest.approx(whole.compute())


def test_perfectly_calibrated_probabilities_have_small_ece(tmp_path):
    torch.manual_seed(0)
    p = torch.rand(50, 32, 32)
    y = (torch.rand(50, 32, 32) < p).long()  # outcomes drawn with the stated probability
    calibrated, overconfident = CalibrationMeter(), CalibrationMeter()
    calibrated.update(binary(p), y)
    overconfident.update(binary((p > 0.5).double() * 0.999 + 0.0005), y)
    assert calibrated.compute()["ece"] < 0.01
    assert overconfident.compute()["ece"] > 0.2
    png = plot_reliability({"calibrated": calibrated, "overconfident": overconfident}, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multiclass_probabilities():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]).T.reshape(1, 3, 1, 2)  # two pixels, three classes
    y = torch.tensor([[[0, 1]]])
    meter = CalibrationMeter()
    meter.update(probs, y)
    scores = meter.compute()
    assert scores["error_rate"] == pytest.approx(0.5)
    assert scores["brier"] == pytest.approx(((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.7**2 + 0.6**2)) / 2)
    assert scores["nll"] == pytest.approx(-(torch.tensor([0.7, 0.3]).log().mean().item()))
