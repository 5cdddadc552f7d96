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


def test_aisfx_encoder_loads_the_wheels_weights_and_stays_frozen():
    encoder = build_audio_encoder("aisfx", frozen=True)
    assert encoder.embed_dim == 512
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.network.training  # batch-norm statistics are kept
    embedding = encoder(_tone(440).repeat(2, 1))
    assert embedding.shape == (2, 512) and torch.isfinite(embedding).all() and not embedding.requires_grad
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


def test_a_frozen_encoder_remembers_training_audio_and_gives_the_same_embeddings():
    encoder = build_audio_encoder("aisfx", frozen=True).train()
    audio = torch.randn(3, 16000) * 0.1
    first = encoder(audio)
    assert len(encoder._seen) == 3
    calls = []
    encoder.network.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    mixed = torch.cat([audio[[2, 0]], torch.randn(1, 16000) * 0.1])
    again = encoder(mixed)
    assert calls == [1]  # only the unseen second went through the network
    assert torch.allclose(again[:2], first[[2, 0]], atol=1e-5)
    assert torch.allclose(again, encoder.eval()(mixed), atol=1e-4)
    assert len(encoder._seen) == 4  # evaluation adds nothing
    encoder.remember_in_eval = True  # as the training loop's validation and the evaluate stage set it
    calls.clear()
    unseen = torch.randn(2, 16000) * 0.1
    evaluated = encoder(torch.cat([mixed, unseen]))
    assert calls == [2] and len(encoder._seen) == 6
    assert torch.equal(encoder(unseen), evaluated[3:]) and calls == [2]  # the second time from memory


def test_a_trainable_encoder_remembers_only_in_eval_mode_when_asked():
    encoder = build_audio_encoder("vggish_lite", frozen=False)
    encoder.remember_in_eval = True  # as the evaluate stage sets it: nothing trains this model there
    audio = torch.randn(2, 16000) * 0.1
    assert encoder.train()(audio).requires_grad and not encoder._seen  # training: a graph, no memory
    evaluated = encoder.eval()(audio)
    assert len(encoder._seen) == 2 and torch.equal(encoder(audio), evaluated)
