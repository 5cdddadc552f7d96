import numpy as np
import pytest

from avs.data.audio import LOG_OFFSET, log_mel, split_seconds
from avs.data.errors import DataError


def test_log_mel_shape_and_floor():
    seconds = np.zeros((3, 16000), np.float32)
    mel = log_mel(seconds)
    assert mel.shape == (3, 96, 64) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, np.log(LOG_OFFSET), rtol=1e-6)


def test_tone_lands_in_the_right_mel_band():
    t = np.arange(16000) / 16000
    low = log_mel((0.5 * np.sin(2 * np.pi * 300 * t))[None].astype(np.float32))[0].mean(axis=0)
    high = log_mel((0.5 * np.sin(2 * np.pi * 3000 * t))[None].astype(np.float32))[0].mean(axis=0)
    assert np.argmax(low) < np.argmax(high)
    # HTK mel of 300 Hz and 3000 Hz between 125 and 7500 Hz over 64 bands
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    band = lambda f: (mel(f) - mel(125)) / (mel(7500) - mel(125)) * 65 - 1  # noqa: E731
    assert abs(np.argmax(low) - band(300)) <= 1.5
    assert abs(np.argmax(high) - band(3000)) <= 1.5


def test_split_seconds_pads_small_shortfall_and_rejects_short_audio():
    out = split_seconds(np.ones(5 * 16000 - 800, np.float32), 5, "x.wav")
    assert out.shape == (5, 16000) and out[-1, -1] == 0
    with pytest.raises(DataError, match=r"x.wav: audio is 4.00 s long; 5 s are needed"):
        split_seconds(np.ones(4 * 16000, np.float32), 5, "x.wav")
