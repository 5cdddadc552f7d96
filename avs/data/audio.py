"""Audio as the shards keep it: each frame's second of 16 kHz mono audio, as 16-bit PCM.

The spectrogram front end belongs to the audio encoder (`avs.model.audio`), so the shards hold
plain audio whatever the encoder, and the robustness probes mix noise into real waveforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avs.data.errors import DataError
from avs.data.media import PCM_SCALE, SAMPLE_RATE

# Audio shorter than T seconds by at most this much is padded with silence at the end, as
# AVSBench's preprocessing pads its short wavs (some S4 wavs are 4.85 s); beyond it, an error.
MAX_AUDIO_SHORTFALL_S = 1.0


def audio_shortfall_s(waveform: np.ndarray, num_seconds: int) -> float:
    """How many seconds of audio are missing for `num_seconds` (0 when there are enough)."""
    return max(0, num_seconds * SAMPLE_RATE - waveform.shape[0]) / SAMPLE_RATE


def split_seconds(waveform: np.ndarray, num_seconds: int, source: str | Path,
                  max_shortfall_s: float = MAX_AUDIO_SHORTFALL_S) -> np.ndarray:
    """Cut `num_seconds` one-second windows from the start of a 16 kHz waveform, padding a
    shortfall of at most `max_shortfall_s` with silence.

    Returns:
        (T, 16000) float32.

    Raises:
        DataError: more than `max_shortfall_s` of the audio is missing.
    """
    needed = num_seconds * SAMPLE_RATE
    missing = needed - waveform.shape[0]
    if missing > max_shortfall_s * SAMPLE_RATE:
        raise DataError(
            source,
            f"audio is {waveform.shape[0] / SAMPLE_RATE:.2f} s long; {num_seconds} s are needed "
            f"(at most {max_shortfall_s:g} s short is padded with silence: preprocess.max_audio_shortfall_s)",
        )
    if missing > 0:
        waveform = np.pad(waveform, (0, missing))
    return waveform[:needed].reshape(num_seconds, SAMPLE_RATE).astype(np.float32)


def centred_window(waveform: np.ndarray, seconds: int) -> np.ndarray:
    """The `seconds` at the middle of a 16 kHz waveform; a shorter one is repeated to fill them
    (as CAVP's VPO loaders crop). Where their slice would start before the first sample, this
    one starts at it."""
    length = seconds * SAMPLE_RATE
    start = max(0, waveform.shape[0] // 2 - length // 2)
    window = waveform[start:start + length]
    if window.shape[0] < length:
        window = np.tile(window, length // window.shape[0] + 1)[:length]
    return window.astype(np.float32)


def to_pcm16(seconds: np.ndarray) -> list[bytes]:
    """(T, 16000) float waveform in [-1, 1] -> T little-endian int16 byte strings (clipped)."""
    scaled = np.clip(np.round(seconds * PCM_SCALE), -PCM_SCALE, PCM_SCALE - 1)
    return [row.astype("<i2").tobytes() for row in scaled]


def from_pcm16(seconds: list[bytes]) -> np.ndarray:
    """T int16 byte strings (as `to_pcm16` writes) -> (T, 16000) float32."""
    return np.stack([np.frombuffer(b, "<i2") for b in seconds]).astype(np.float32) / PCM_SCALE


def add_white_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """(T, samples) one clip's audio -> with fresh white noise at `snr_db` against the clip's power.

    The same rule as the evaluation's noise probe (`avs.eval.robustness.with_noise`), with a new
    draw each call; a silent clip stays silent (its SNR is undefined).
    """
    signal = audio.astype(np.float64)
    noise = rng.standard_normal(signal.shape)
    gain = np.sqrt(np.mean(signal**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (signal + gain * noise).astype(audio.dtype)
