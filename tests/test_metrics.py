"""AVSBench-protocol J and F against a direct implementation of the protocol."""

from __future__ import annotations

import math

import pytest
import torch

from avs.eval.metrics import BinaryMeter


def reference(probs: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Frame by frame, threshold by threshold, as the AVSBench code does it."""
    thresholds = torch.linspace(0, 1 - 1e-10, 255, dtype=torch.float64)
    jaccards, f_rows = [], []
    for p, t in zip(probs.double(), truth):
        pred = p > 0.5
        if t.sum() == 0:
            jaccards.append((~pred).double().mean().item())
            continue
        jaccards.append(((pred & t).sum() / (pred | t).sum()).item())
        row = []
        for th in thresholds:
            y = p >= th
            tp = (y & t).sum().double()
            precision, recall = tp / (y.sum() + 1e-20), tp / (t.sum() + 1e-20)
            f = 1.3 * precision * recall / (0.3 * precision + recall)
            row.append(0.0 if math.isnan(f) else f.item())
        f_rows.append(row)
    return sum(jaccards) / len(jaccards), torch.tensor(f_rows, dtype=torch.float64).mean(0).max().item()


def test_matches_the_protocol_and_ignores_batching():
    torch.manual_seed(0)
    truth = torch.rand(12, 16, 16) > 0.6
    truth[3] = False  # an empty ground truth: J counts correctly empty pixels, F skips the frame
    probs = (truth.double() * 0.6 + torch.rand(12, 16, 16) * 0.5).clamp(0, 1)
    probs[5] = torch.linspace(0, 1, 256).view(16, 16)  # values on threshold boundaries
    expected_j, expected_f = reference(probs, truth)
    for batch in (1, 5, 12):
        meter = BinaryMeter()
        for start in range(0, 12, batch):
            meter.update(probs[start:start + batch], truth[start:start + batch])
        scores = meter.compute()
        assert scores["J"] == pytest.approx(expected_j, abs=1e-9)
        assert scores["F"] == pytest.approx(expected_f, abs=1e-9)
        assert scores["frames"] == 12


def test_hand_computed_cases_and_merging():
    meter = BinaryMeter()
    truth = torch.zeros(2, 2, 2, dtype=torch.bool)
    truth[0, 0, 0] = True
    probs = torch.zeros(2, 2, 2)
    probs[0, 0, 0] = probs[0, 0, 1] = 0.9  # frame 0: IoU 1/2; frame 1 empty and predicted empty: J = 1
    meter.update(probs, truth)
    assert meter.compute()["J"] == pytest.approx(0.75)
    # F of frame 0: best threshold keeps both 0.9 pixels (P = 1/2, R = 1): 1.3 * 0.5 / (0.15 + 1)
    assert meter.compute()["F"] == pytest.approx(1.3 * 0.5 / 1.15)
    empty_only = BinaryMeter()
    empty_only.update(torch.zeros(3, 2, 2), torch.zeros(3, 2, 2, dtype=torch.bool))
    assert empty_only.compute()["J"] == 1.0 and math.isnan(empty_only.compute()["F"])
    assert math.isnan(BinaryMeter().compute()["J"])
    merged = BinaryMeter()
    merged.merge(meter.state())
    merged.merge(empty_only.state())
    assert merged.compute()["J"] == pytest.approx((0.5 + 1 + 3) / 5)
    assert merged.compute()["F"] == pytest.approx(meter.compute()["F"])
