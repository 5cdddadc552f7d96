"""Audio perturbations for the robustness probes."""

from __future__ import annotations

import pytest
import torch

from avs.eval.robustness import muted, swapped, with_noise


def test_muted_is_silence():
    assert not muted(torch.randn(2, 3, 16000)).any()


def test_swapped_gives_every_clip_another_clips_audio():
    clips = torch.arange(5.0).view(5, 1, 1).expand(5, 2, 16000)
    out = swapped(clips)
    assert [int(x) for x in out[:, 0, 0]] == [2, 3, 4, 0, 1]
    with pytest.raises(ValueError):
        swapped(clips[:1])


def test_noise_reaches_the_asked_snr_per_clip():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t).expand(2, 3, 16000).clone()
    tone[1] *= 0.01  # a quiet clip gets proportionally quiet noise
    for snr in (20.0, 0.0):
        noise = with_noise(tone, snr) - tone
        for clip in range(2):
            measured = 10 * torch.log10(tone[clip].pow(2).mean() / noise[clip].pow(2).mean())
            assert measured.item() == pytest.approx(snr, abs=0.01)
    assert torch.equal(with_noise(tone, 10.0), with_noise(tone, 10.0))  # seeded
    assert not with_noise(torch.zeros(1, 2, 16000), 0.0).any()  # silence has no SNR: stays silent
