"""The sounding-object pick rate: which frames count, and what a pick is."""

from __future__ import annotations

import math

import torch

from avs.eval.attribution import SoundingPickMeter


def test_a_pick_is_more_probability_on_the_sounding_object_than_on_the_silent_one():
    sounding = torch.zeros(3, 8, 8, dtype=torch.bool)
    sounding[:, :, :4] = True  # the left half sounds ...
    visible = torch.ones(3, 8, 8, dtype=torch.bool)  # ... and the right half is a silent object
    visible[2, :, 4:] = False  # frame 2: nothing silent in view, so it does not count
    probs = torch.zeros(3, 8, 8)
    probs[0, :, :4], probs[0, :, 4:] = 0.9, 0.2  # picks the sounding object
    probs[1, :, :4], probs[1, :, 4:] = 0.3, 0.6  # picks the silent one
    meter = SoundingPickMeter()
    meter.update(probs, sounding, visible)
    result = meter.compute()
    assert result["frames"] == 2 and result["pick_rate"] == 0.5
    assert math.isclose(result["p_sounding"], 0.6, rel_tol=1e-6) and math.isclose(result["p_silent"], 0.4, rel_tol=1e-6)


def test_no_frame_with_both_regions_gives_nan():
    meter = SoundingPickMeter()
    tiny = torch.zeros(1, 8, 8, dtype=torch.bool)
    tiny[0, 0, 0] = True  # under MIN_PIXELS
    meter.update(torch.rand(1, 8, 8), tiny, torch.ones(1, 8, 8, dtype=torch.bool))
    result = meter.compute()
    assert result["frames"] == 0 and math.isnan(result["pick_rate"])


def test_mixed_frames_score_the_model_against_the_visible_union():
    sounding = torch.zeros(1, 8, 8, dtype=torch.bool)
    sounding[:, :, :4] = True  # the left half sounds, the right half is a silent object
    visible = torch.ones(1, 8, 8, dtype=torch.bool)
    probs = torch.zeros(1, 8, 8)
    probs[0, :, :5] = 0.9  # the sounding object and a quarter of the silent one
    meter = SoundingPickMeter()
    meter.update(probs, sounding, visible)
    result = meter.compute()
    assert math.isclose(result["mixed_J"], 32 / 40, rel_tol=1e-6) and math.isclose(result["mixed_union_J"], 0.5)
    assert result["sounding_covered"] == 1.0 and math.isclose(result["silent_covered"], 0.25, rel_tol=1e-6)
    assert result["pick_rate"] == 1.0  # mean p 0.9 against 0.225
