"""Pieces of the training loop that need no Ray: the data-wait clock, the epoch's log line."""

from __future__ import annotations

import time

from avs.train.loop import WaitClock, epoch_summary


def slow_items(count: int, delay: float):
    for item in range(count):
        time.sleep(delay)
        yield item


def test_wait_clock_counts_the_wait_for_items_not_the_work_on_them():
    clock = WaitClock()
    seen = []
    for item in clock.timed(slow_items(3, delay=0.05)):
        seen.append(item)
        time.sleep(0.1)  # the consumer's own work: not waiting
    assert seen == [0, 1, 2]
    assert 0.15 <= clock.seconds < 0.25


def test_wait_clock_keeps_counting_across_iterables_and_stops_on_exhaustion():
    clock = WaitClock()
    assert list(clock.timed([])) == []
    assert list(clock.timed(slow_items(2, delay=0.02))) == [0, 1]
    assert 0.04 <= clock.seconds < 0.2


def test_epoch_summary_names_the_epoch_loss_validation_and_speed():
    metrics = {
        "epoch": 2,
        "train/total": 12.345,
        "val/J": 0.5,
        "val/F": 0.6,
        "val_ms3/J": 0.41,
        "val_s4/J": 0.8,
        "val_s4/F": 0.9,
        "val_ms3_visible_union/J": 0.7,
        "train/clips_per_s": 3.456,
    }
    line = epoch_summary(metrics, epochs=10, seconds=95.4)
    assert line == "avs train: epoch 2 (3/10): loss 12.35, val J 0.500 (ms3 0.410, s4 0.800), 3.46 clips/s, 95 s"


def test_the_loss_meter_averages_finite_terms_and_reports_divergence():
    import pytest
    import torch

    from avs.train.step import LossMeter, TrainingDiverged

    meter = LossMeter()
    nan = torch.tensor(float("nan"))
    meter.add({"total": torch.tensor(2.0), "rp_gap": nan, "never": nan})
    meter.add({"total": torch.tensor(4.0), "rp_gap": torch.tensor(0.5), "never": nan})
    meter.raise_if_diverged("epoch 0")  # all finite: nothing raised
    assert meter.means() == {"total": 3.0, "rp_gap": 0.5}  # NaN left out of a mean; a never-finite term dropped
    meter.add({"total": torch.tensor(float("inf")), "rp_gap": torch.tensor(0.1)})
    with pytest.raises(TrainingDiverged, match="epoch 1, steps 0-2: the loss stopped being finite .1 steps."):
        meter.raise_if_diverged("epoch 1, steps 0-2")
