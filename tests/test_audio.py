import numpy as np
import pytest
import torch

from avs.data.audio import from_pcm16, split_seconds, to_pcm16
from avs.data.errors import DataError
from avs.model.audio import VGGISH_LOG_OFFSET, AisfxLogMel, VGGishLogMel, build_audio_encoder


def test_vggish_log_mel_shape_and_floor():
    mel = VGGishLogMel()(torch.zeros(3, 16000))
    assert mel.shape == (3, 96, 64) and mel.dtype == torch.float32
    torch.testing.assert_close(mel, torch.full_like(mel, np.log(VGGISH_LOG_OFFSET)))


def _tone(frequency: float) -> torch.Tensor:
    t = torch.arange(16000) / 16000
    return (0.5 * torch.sin(2 * torch.pi * frequency * t))[None]


def test_tone_lands_in_the_right_vggish_mel_band():
    low = VGGishLogMel()(_tone(300))[0].mean(0)
    high = VGGishLogMel()(_tone(3000))[0].mean(0)
    assert low.argmax() < high.argmax()
    # HTK mel of 300 Hz and 3000 Hz between 125 and 7500 Hz over 64 bands
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    band = lambda f: (mel(f) - mel(125)) / (mel(7500) - mel(125)) * 65 - 1  # noqa: E731
    assert abs(low.argmax().item() - band(300)) <= 1.5
    assert abs(high.argmax().item() - band(3000)) <= 1.5


def test_aisfx_front_end_shape_range_and_band():
    front = AisfxLogMel()
    out = front(torch.cat([_tone(1000), torch.zeros(1, 16000)]))
    assert out.shape == (2, 44, 96)  # 1 s at 44.1 kHz, hop 1024, centred frames
    assert (out >= 0).all() and out.max() <= 1.0 and not out[1].any()  # silence stays silence
    # 1 kHz in HTK mel over 0..22050 Hz, 96 bands
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    expected = mel(1000) / mel(22050) * 97 - 1
    assert abs(out[0].mean(0).argmax().item() - expected) <= 1.5


def test_aisfx_encoder_loads_the_wheels_weights():
    encoder = build_audio_encoder("aisfx").eval()
    assert encoder.embed_dim == 512
    embedding = encoder(_tone(440).repeat(2, 1))
    assert embedding.shape == (2, 512) and torch.isfinite(embedding).all()
    # the real pretrained weights, not an initialisation: BN statistics differ from 0/1
    assert encoder.network.conv_block1.bn1.running_var.std() > 0


def test_pcm16_round_trip():
    audio = np.random.default_rng(0).uniform(-1.2, 1.2, (2, 16000)).astype(np.float32)
    data = to_pcm16(audio)
    assert len(data) == 2 and all(len(b) == 32000 for b in data)
    back = from_pcm16(data)
    np.testing.assert_allclose(back, np.clip(audio, -1, 32767 / 32768), atol=1 / 32768)


def test_split_seconds_pads_small_shortfall_and_rejects_short_audio():
    out = split_seconds(np.ones(5 * 16000 - 800, np.float32), 5, "x.wav")
    assert out.shape == (5, 16000) and out[-1, -1] == 0
    out = split_seconds(np.ones(4 * 16000, np.float32), 5, "x.wav")  # 1 s short: the default limit
    assert not out[-1].any() and out[-2].all()
    with pytest.raises(DataError, match=r"x.wav: audio is 3.99 s long; 5 s are needed"):
        split_seconds(np.ones(4 * 16000 - 160, np.float32), 5, "x.wav")
    with pytest.raises(DataError, match=r"x.wav: audio is 4.95 s long"):
        split_seconds(np.ones(5 * 16000 - 800, np.float32), 5, "x.wav", max_shortfall_s=0.0)


def test_the_cache_computes_only_unseen_seconds_and_gives_the_same_embeddings():
    from avs.eval.audio_cache import AudioEmbeddingCache

    encoder = build_audio_encoder("aisfx").eval()
    cache = AudioEmbeddingCache(encoder)
    audio = torch.randn(1, 3, 16000) * 0.1  # (B, N, samples)
    first = cache(audio)
    assert first.shape == (1, 3, 512) and len(cache) == 3 and not first.requires_grad
    calls = []
    encoder.network.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    mixed = torch.cat([audio[:, [2, 0]], torch.randn(1, 1, 16000) * 0.1], 1)
    again = cache(mixed)
    assert calls == [1] and len(cache) == 4  # only the unseen second went through the network
    assert torch.allclose(again[0, :2], first[0, [2, 0]], atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(again[0], encoder(mixed[0]), atol=1e-4)
    full = AudioEmbeddingCache(encoder, max_entries=4)
    full(mixed)
    full(torch.randn(1, 2, 16000))
    assert len(full) == 3  # when full it remembers nothing more, and still answers
