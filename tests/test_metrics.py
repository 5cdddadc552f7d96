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
            meter.update(probs[start : start + batch], truth[start : start + batch])
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


def test_compat_averages_per_batch_like_the_avsbench_code():
    torch.manual_seed(1)
    truth = torch.rand(6, 8, 8) > 0.5
    truth[5] = False
    probs = (truth.double() * 0.5 + torch.rand(6, 8, 8) * 0.6).clamp(0, 1)
    meter = BinaryMeter(compat=True)
    batches = [(0, 4), (4, 6)]  # an uneven last batch: its frames weigh more than in the exact protocol
    for start, end in batches:
        meter.update(probs[start:end], truth[start:end])
    per_batch = [reference(probs[s:e], truth[s:e]) for s, e in batches]
    assert meter.compute()["J"] == pytest.approx(
        sum(j for j, _ in per_batch) / 2, abs=1e-6
    )  # the reference divides in float32
    assert meter.compute()["F"] == pytest.approx(sum(f for _, f in per_batch) / 2, abs=1e-7)
    exact = BinaryMeter()
    exact.update(probs, truth)
    assert exact.compute()["J"] != pytest.approx(meter.compute()["J"], abs=1e-6)


def test_compat_counts_an_all_empty_batch_with_f_zero():
    """`Eval_Fmeasure` returns its zero-initialised score for a batch of empty truths, and
    `utility.py` averages it with the rest."""
    meter = BinaryMeter(compat=True)
    meter.update(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2, dtype=torch.bool))  # J = 1, F = 0
    truth = torch.tensor([[[True, False], [False, False]]])
    meter.update(truth.double(), truth)  # J = 1, F = 1
    probs = torch.tensor([[[0.9, 0.9], [0.2, 0.2]], [[0.6, 0.1], [0.1, 0.1]]])
    truth = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
    # J: frame 0 IoU 1/2, frame 1 (empty truth) 3/4 of its pixels left empty -> 5/8.
    # F: frame 1 is skipped; frame 0 at its best threshold keeps both 0.9 pixels: P = 1/2, R = 1.
    meter.update(probs, truth)
    assert meter.compute()["J"] == pytest.approx((1 + 1 + 5 / 8) / 3)
    assert meter.compute()["F"] == pytest.approx((0 + 1 + 1.3 * 0.5 / 1.15) / 3)


def official_avss(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """`avss/test.py`'s scores, written out from its rules: per frame, each class's IoU
    (0 when absent) and F (NaN as 0) are summed, with a count of frames where it occurs; the
    per-class means (NaN as 0) are averaged over every class."""
    ious, fs, counts = torch.zeros(num_classes), torch.zeros(num_classes), torch.zeros(num_classes)
    for p, t in zip(pred, truth):
        for c in range(num_classes):
            inter, in_pred, in_truth = ((p == c) & (t == c)).sum(), (p == c).sum(), (t == c).sum()
            union = in_pred + in_truth - inter
            ious[c] += inter / (union + 2.220446049250313e-16)
            precision, recall = inter / in_pred, inter / in_truth
            f = 1.3 * precision * recall / (0.3 * precision + recall)
            fs[c] += 0.0 if torch.isnan(f) else f
            counts[c] += union > 0
    return (ious / counts).nan_to_num(0).mean().item(), (fs / counts).nan_to_num(0).mean().item()


def test_avss_compat_over_all_classes_with_padded_frames():
    from avs.eval.metrics import SemanticMeter

    truth = torch.tensor([[[0, 1], [1, 2]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 3]], [[0, 0], [0, 0]]])  # frame 2: padding
    meter = SemanticMeter(num_classes=5, all_classes=True)
    meter.update(pred, truth)
    # class 0: IoU 1, 3/4, 1 over 3 frames; 1: 1/2; 2: 1/2; 3: 0 (frame 1 only); 4: never, so 0.
    assert meter.compute()["J"] == pytest.approx(((1 + 0.75 + 1) / 3 + 0.5 + 0.5 + 0 + 0) / 5)

    def f(p, r):
        return 1.3 * p * r / (0.3 * p + r)

    assert meter.compute()["F"] == pytest.approx(((1 + f(1, 0.75) + 1) / 3 + f(1, 0.5) + f(0.5, 1)) / 5)
    torch.manual_seed(3)
    truth, pred = torch.randint(0, 6, (7, 5, 5)), torch.randint(0, 6, (7, 5, 5))
    truth[:, :, :2] = 0
    meter = SemanticMeter(num_classes=9, all_classes=True)  # classes 6..8 never occur
    meter.update(pred[:4], truth[:4])
    meter.update(pred[4:], truth[4:])
    j, f_score = official_avss(pred, truth, 9)
    assert meter.compute()["J"] == pytest.approx(j, abs=1e-6)
    assert meter.compute()["F"] == pytest.approx(f_score, abs=1e-6)


def test_semantic_meter_hand_computed():
    from avs.eval.metrics import SemanticMeter

    truth = torch.tensor([[[0, 1], [1, 2]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 3]]])
    meter = SemanticMeter(num_classes=5)
    meter.update(pred[:1], truth[:1])
    meter.update(pred[1:], truth[1:])
    # class 0: frame 0 IoU 1, frame 1 IoU 3/4; class 1: IoU 1/2 (frame 0 only); class 2: 1/2; class 3: 0 (frame 1)
    expected_j = ((1 + 0.75) / 2 + 0.5 + 0.5 + 0.0) / 4

    # F (beta^2 = 0.3): class 0 frame 1 P = 1, R = 3/4; class 1 P = 1, R = 1/2; class 2 P = 1/2, R = 1
    def f(p, r):
        return 1.3 * p * r / (0.3 * p + r)

    expected_f = ((1 + f(1, 0.75)) / 2 + f(1, 0.5) + f(0.5, 1) + 0.0) / 4
    scores = meter.compute()
    assert scores["classes"] == 4  # class 4 never occurs and does not count
    assert scores["J"] == pytest.approx(expected_j)
    assert scores["F"] == pytest.approx(expected_f)
    merged = SemanticMeter(num_classes=5)
    merged.merge(meter.state())
    assert merged.compute() == scores
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        meter.update(pred + 5, truth)


def test_dataset_meter_accumulates_over_the_set():
    from avs.eval.metrics import DatasetMeter

    truth = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    meter = DatasetMeter(num_classes=2)
    meter.update(pred, truth)
    # over the set: foreground TP 1, FP 1, FN 1 -> IoU 1/3; background TP 5, FP 1, FN 1 -> IoU 5/7
    scores = meter.compute()
    assert scores["J"] == pytest.approx((1 / 3 + 5 / 7) / 2)

    def f(p, r):
        return 1.3 * p * r / (0.3 * p + r)

    assert scores["F"] == pytest.approx((f(1 / 2, 1 / 2) + f(5 / 6, 5 / 6)) / 2)
    assert scores["J&F"] == pytest.approx((scores["J"] + scores["F"]) / 2)
    one_by_one = DatasetMeter(num_classes=2)
    for i in range(2):
        one_by_one.update(pred[i : i + 1], truth[i : i + 1])
    assert one_by_one.compute() == pytest.approx(scores)


def test_dataset_meter_absent_classes_cavp_or_ddeseg():
    from avs.eval.metrics import DatasetMeter

    truth = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    skip, zero = DatasetMeter(num_classes=3), DatasetMeter(num_classes=3, absent_as_zero=True)
    skip.update(pred, truth)
    zero.update(pred, truth)
    assert skip.compute()["J"] == pytest.approx((1 / 3 + 5 / 7) / 2)  # class 2 left out (DDESeg)
    assert zero.compute()["J"] == pytest.approx((1 / 3 + 5 / 7 + 0) / 3)  # class 2 scores 0 (CAVP)
