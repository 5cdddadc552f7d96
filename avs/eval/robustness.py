"""Audio-reliance probes: the test clips with their audio muted, swapped or drowned in noise.

A model that segments from vision alone keeps its J when the audio goes; one that listens
loses it (swapped, noise) or predicts nothing (muted: the right answer is an empty mask).
The perturbations act on the waveforms stored in the shards, before the encoder's front end:
  muted    digital silence.
  swapped  each clip gets the audio of the clip `len // 2` places further on in the test set.
  noise    seeded white noise added at a given SNR: per clip, the noise's power is the clip's
           audio power divided by 10^(SNR / 10).
"""

from __future__ import annotations

import numpy as np
import torch


def muted(audio: torch.Tensor) -> torch.Tensor:
    """(..., samples) waveforms -> silence of the same shape."""
    return torch.zeros_like(audio)


def swapped(audio: torch.Tensor) -> torch.Tensor:
    """(N, T, samples) audio of N clips -> clip i gets clip (i + N // 2) mod N's audio."""
    if len(audio) < 2:
        raise ValueError("swapping audio needs at least two clips")
    return audio.roll(-(len(audio) // 2), dims=0)


def with_noise(audio: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """(N, T, samples) audio -> the same clips with white noise at `snr_db` (per clip).

    The noise is the same seeded draw for every clip, scaled to each clip's power; a silent
    clip stays silent (its SNR is undefined).
    """
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.standard_normal(audio.shape[1:])).to(audio.device, torch.float64)
    signal = audio.double()
    signal_power = signal.pow(2).flatten(1).mean(1)  # (N,)
    gain = (signal_power / (noise.pow(2).mean() * 10 ** (snr_db / 10))).sqrt()
    return (signal + gain.view(-1, *([1] * noise.dim())) * noise).to(audio.dtype)
