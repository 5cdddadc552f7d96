"""The VGGish log-mel front end (METHOD.md, "Audio"), computed with torchaudio.

Per frame t, the audio of second t (16 kHz) becomes a 96 x 64 patch: 25 ms windows, 10 ms hop,
magnitude spectrum, 64 HTK mel bands from 125 to 7500 Hz, log(mel + 0.01).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from avs.data.errors import DataError
from avs.data.media import SAMPLE_RATE

MEL_FRAMES = 96
MEL_BANDS = 64
LOG_OFFSET = 0.01
# Audio shorter than T seconds by at most this much is padded with silence (codec tail loss).
SHORT_AUDIO_TOLERANCE_S = 0.1


@lru_cache(maxsize=1)
def _mel_transform():
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE,
        n_fft=512,
        win_length=400,
        hop_length=160,
        f_min=125.0,
        f_max=7500.0,
        n_mels=MEL_BANDS,
        power=1.0,  # VGGish uses the magnitude, not the power, spectrum
        center=False,
        mel_scale="htk",
        norm=None,
    )


def split_seconds(waveform: np.ndarray, num_seconds: int, source: str | Path) -> np.ndarray:
    """Cut `num_seconds` one-second windows from the start of a 16 kHz waveform.

    Returns:
        (T, 16000) float32.

    Raises:
        DataError: the audio is shorter than `num_seconds` (beyond a small codec tolerance).
    """
    needed = num_seconds * SAMPLE_RATE
    missing = needed - waveform.shape[0]
    if missing > SHORT_AUDIO_TOLERANCE_S * SAMPLE_RATE:
        raise DataError(
            source,
            f"audio is {waveform.shape[0] / SAMPLE_RATE:.2f} s long; {num_seconds} s are needed",
        )
    if missing > 0:
        waveform = np.pad(waveform, (0, missing))
    return waveform[:needed].reshape(num_seconds, SAMPLE_RATE).astype(np.float32)


def log_mel(seconds: np.ndarray) -> np.ndarray:
    """VGGish log-mel patches.

    Args:
        seconds: (T, 16000) float32, one second of 16 kHz mono audio per frame.

    Returns:
        (T, 96, 64) float32.
    """
    with torch.no_grad():
        mel = _mel_transform()(torch.from_numpy(seconds))  # (T, 64, 98)
    mel = mel.transpose(1, 2)[:, :MEL_FRAMES]  # (T, 96, 64)
    return torch.log(mel + LOG_OFFSET).numpy().astype(np.float32)
