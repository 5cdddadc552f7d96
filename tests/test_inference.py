"""Test-time inference (`segment`): sizes, mirror averaging, and the settings' defaults."""

from __future__ import annotations

import pytest
import torch

from avs.config import config_from_dict
from avs.eval.inference import inference_size, segment
from avs.model import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"backbone_weights": None, "ama": {"groups": [4, 4, 4, 2], "grouping_tokens": 64}}})
    return build_model(cfg).eval()


def inputs(height: int, width: int):
    torch.manual_seed(1)
    return torch.rand(1, 2, 3, height, width), torch.randn(1, 2, 16000) * 0.1


def test_at_its_own_size_without_flip_it_is_the_model(model):
    frames, audio = inputs(64, 64)
    with torch.inference_mode():
        expected, got = model(frames, audio), segment(model, frames, audio, size=64, flip=False)
    for key in ("logits", "mask_logits", "uncertainty"):
        torch.testing.assert_close(got[key], expected[key])


def test_flip_averages_with_the_mirrored_frames(model):
    frames, audio = inputs(64, 64)
    with torch.inference_mode():
        plain, mirrored = model(frames, audio), model(frames.flip(-1), audio)
        got = segment(model, frames, audio, size=64, flip=True)
        again = segment(model, frames.flip(-1), audio, size=64, flip=True)
    torch.testing.assert_close(got["logits"], (plain["logits"] + mirrored["logits"].flip(-1)) / 2)
    torch.testing.assert_close(got["uncertainty"], (plain["uncertainty"] + mirrored["uncertainty"].flip(-1)) / 2)
    # flip-averaged outputs are mirror-symmetric: mirroring the input mirrors the output
    torch.testing.assert_close(again["logits"], got["logits"].flip(-1), atol=1e-5, rtol=1e-4)


def test_any_frame_size_comes_back_at_that_size(model):
    frames, audio = inputs(48, 80)
    with torch.inference_mode():
        got = segment(model, frames, audio, size=64, flip=False)
        direct = model(torch.nn.functional.interpolate(frames[0], size=(64, 64), mode="bilinear", antialias=True)[None], audio)
    assert got["logits"].shape == (1, 2, 1, 48, 80) and got["uncertainty"].shape == (1, 2, 48, 80)
    # the maps are the model's 64 px maps resized: their means agree closely
    assert got["logits"].mean().item() == pytest.approx(direct["logits"].mean().item(), abs=0.05)


def test_inference_size_defaults_to_the_training_size():
    assert inference_size(config_from_dict({"train": {"image_size": 96}, "evaluate": {"image_size": 160}})) == 160
    assert inference_size(config_from_dict({"train": {"image_size": 96}, "evaluate": {"image_size": None}})) == 96
    model = config_from_dict({"train": {"image_size": 96}, "evaluate": {"image_size": 160}})
    assert inference_size(model, config_from_dict({"evaluate": {"image_size": 200}}).evaluate) == 200  # current params win
