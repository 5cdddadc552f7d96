"""Test-time inference (`segment`): sizes, mirror averaging, the guided filter, and the settings' defaults."""

from __future__ import annotations

import pytest
import torch

from avs.config import ConfigError, config_from_dict
from avs.eval.inference import guided_logits, inference_size, segment
from avs.model import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = config_from_dict(
        {"model": {"backbone_weights": None, "ama": {"groups": [4, 4, 4, 2], "grouping_tokens": 64}}}
    )
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
        direct = model(
            torch.nn.functional.interpolate(frames[0], size=(64, 64), mode="bilinear", antialias=True)[None], audio
        )
    assert got["logits"].shape == (1, 2, 1, 48, 80) and got["uncertainty"].shape == (1, 2, 48, 80)
    # the maps are the model's 64 px maps resized: their means agree closely
    assert got["logits"].mean().item() == pytest.approx(direct["logits"].mean().item(), abs=0.05)


def test_inference_size_defaults_to_the_training_size():
    assert inference_size(config_from_dict({"train": {"image_size": 96}, "evaluate": {"image_size": 160}})) == 160
    assert inference_size(config_from_dict({"train": {"image_size": 96}, "evaluate": {"image_size": None}})) == 96
    model = config_from_dict({"train": {"image_size": 96}, "evaluate": {"image_size": 160}})
    assert (
        inference_size(model, config_from_dict({"evaluate": {"image_size": 200}}).evaluate) == 200
    )  # current params win


def square_scene(size: int = 64):
    """A red square on a textured green background, its exact mask, and a blurred, shifted guess of it."""
    torch.manual_seed(2)
    frames = torch.zeros(1, 1, 3, size, size)
    frames[..., 1, :, :] = 0.6 + 0.1 * torch.rand(size, size)
    truth = torch.zeros(size, size, dtype=torch.bool)
    truth[20:44, 16:40] = True
    frames[..., :, truth] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1)
    guess = torch.zeros(1, 1, 1, size, size)
    guess[..., 22:46, 19:43] = 1.0  # 2 and 3 pixels off
    guess = torch.nn.functional.avg_pool2d(guess[0], 9, stride=1, padding=4)[None]  # blobby
    return frames, truth, torch.logit(guess.clamp(0.02, 0.98))


def iou(logits: torch.Tensor, truth: torch.Tensor) -> float:
    mask = logits[0, 0, 0] > 0
    return ((mask & truth).sum() / (mask | truth).sum()).item()


def test_the_guided_filter_snaps_a_blobby_mask_to_the_frames_edges():
    frames, truth, guess = square_scene()
    (sharpened,) = guided_logits((guess,), frames, kernel=15, eps=1e-4)
    assert sharpened.shape == guess.shape and sharpened.dtype == torch.float32
    assert iou(guess, truth) < 0.8
    assert iou(sharpened, truth) > 0.95
    (barely,) = guided_logits((guess,), frames, kernel=15, eps=10.0)  # a huge eps is a plain box blur
    assert iou(barely, truth) < 0.85


def test_the_guided_filter_keeps_class_maps_log_probabilities():
    torch.manual_seed(3)
    frames, logits = torch.rand(2, 3, 3, 32, 32), torch.randn(2, 3, 5, 32, 32) * 3
    binary, classes = guided_logits((logits[:, :, :1], logits), frames, kernel=7, eps=1e-3)
    assert binary.shape == (2, 3, 1, 32, 32) and classes.shape == logits.shape
    torch.testing.assert_close(classes.exp().sum(2), torch.ones(2, 3, 32, 32))
    assert torch.isfinite(binary).all() and binary.abs().max() <= torch.logit(torch.tensor(1 - 1e-4)) + 1e-4


def test_segment_applies_the_guided_filter_at_the_models_size(model):
    frames, audio = inputs(48, 80)
    with torch.inference_mode():
        plain = segment(model, frames, audio, size=64, flip=False)
        filtered = segment(model, frames, audio, size=64, flip=False, guided_kernel=9, guided_eps=1e-3)
        x = torch.nn.functional.interpolate(frames[0], size=(64, 64), mode="bilinear", antialias=True)[None]
        raw = model(x, audio)
        expected = guided_logits((raw["logits"], raw["mask_logits"]), x, 9, 1e-3)
    assert filtered["logits"].shape == plain["logits"].shape == (1, 2, 1, 48, 80)
    assert not torch.allclose(filtered["logits"], plain["logits"])
    resized = torch.nn.functional.interpolate(expected[0][0], size=(48, 80), mode="bilinear", align_corners=False)
    torch.testing.assert_close(filtered["logits"][0], resized, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(filtered["uncertainty"], plain["uncertainty"])  # u is not filtered


@pytest.mark.parametrize("kernel", [1, 4, 20])
def test_guided_kernel_must_be_odd_and_at_least_3(kernel):
    with pytest.raises(ConfigError, match="evaluate.guided_kernel"):
        config_from_dict({"evaluate": {"guided_kernel": kernel}})
    assert config_from_dict({"evaluate": {"guided_kernel": 0}}).evaluate.guided_kernel == 0
