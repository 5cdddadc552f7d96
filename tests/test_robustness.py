"""Audio perturbations for the robustness probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avs.data.audio import LOG_OFFSET, log_mel
from avs.eval.robustness import muted, swapped, with_noise


def test_muted_is_the_front_end_of_silence():
    silence = torch.from_numpy(log_mel(np.zeros((2, 16000), np.float32)))
    assert torch.allclose(muted(torch.randn(2, 96, 64)), silence)


def test_swapped_gives_every_clip_another_clips_audio():
    clips = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 2, 96, 64)
    out = swapped(clips)
    assert [int(x) for x in out[:, 0, 0, 0]] == [2, 3, 4, 0, 1]
    with pytest.raises(ValueError):
        swapped(clips[:1])


def test_noise_reaches_the_asked_snr_and_approaches_the_signal_at_high_snr():
    rng = np.random.default_rng(1)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)[None].repeat(3, 0) * 0.3
    clean = torch.from_numpy(log_mel(tone + rng.standard_normal((3, 16000)).astype(np.float32) * 1e-4))[None]
    for snr in (20.0, 0.0):
        noisy = with_noise(clean, snr)
        signal = clean.double().exp() - LOG_OFFSET
        added = (noisy.double().exp() - LOG_OFFSET) ** 2 - signal**2  # the noise's mel energy
        assert 10 * torch.log10((signal**2).sum() / added.sum()).item() == pytest.approx(snr, abs=0.05)
    change = {snr: (with_noise(clean, snr) - clean).abs().mean().item() for snr in (60.0, 20.0, 0.0)}
    assert change[60.0] < 0.2 < 1.0 < change[0.0] and change[60.0] < change[20.0] < change[0.0]
