"""Audio-reliance probes: the test clips with their audio muted, swapped or drowned in noise.

A model that segments from vision alone keeps its J when the audio goes; one that listens
loses it (swapped, noise) or predicts nothing (muted: the right answer is an empty mask).
The perturbations act on the VGGish log-mel patches stored in the shards:
  muted    the log-mel of digital silence, exactly what the front end gives for zeros.
  swapped  each clip gets the audio of the clip `len // 2` places further on in the test set.
  noise    white noise at a given SNR, mixed in the mel domain [ours]: the shards keep log-mel,
           not waveforms, so signal and noise magnitudes combine as sqrt(m_s^2 + g^2 m_n^2) per
           mel bin (powers of independent signals add), with g set so that the clip's summed
           mel energy ratio is the SNR. The noise's mel magnitudes come from a seeded white-noise
           waveform through the real front end (`avs.data.audio.log_mel`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from avs.data.audio import LOG_OFFSET, log_mel
from avs.data.media import SAMPLE_RATE


def muted(log_mels: torch.Tensor) -> torch.Tensor:
    """(..., 96, 64) log-mel -> the log-mel of silence, same shape."""
    return torch.full_like(log_mels, float(np.log(LOG_OFFSET)))


def swapped(log_mels: torch.Tensor) -> torch.Tensor:
    """(N, T, 96, 64) log-mel of N clips -> clip i gets clip (i + N // 2) mod N's audio."""
    if len(log_mels) < 2:
        raise ValueError("swapping audio needs at least two clips")
    return log_mels.roll(-(len(log_mels) // 2), dims=0)


@lru_cache(maxsize=4)
def _noise_magnitude(num_frames: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    waveform = rng.standard_normal((num_frames, SAMPLE_RATE)).astype(np.float32) * 0.1
    return torch.from_numpy(log_mel(waveform)).double().exp() - LOG_OFFSET  # (T, 96, 64)


def with_noise(log_mels: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """(N, T, 96, 64) log-mel -> the same clips with white noise at `snr_db` (per clip)."""
    signal = (log_mels.double().exp() - LOG_OFFSET).clamp(min=0)
    noise = _noise_magnitude(log_mels.shape[1], seed).to(signal.device)
    signal_energy = (signal**2).flatten(1).sum(1)  # (N,)
    gain2 = signal_energy / ((noise**2).sum() * 10 ** (snr_db / 10))
    mixed = (signal**2 + gain2.view(-1, 1, 1, 1) * noise**2).sqrt()
    return (mixed + LOG_OFFSET).log().to(log_mels.dtype)
