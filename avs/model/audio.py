"""Audio encoders (METHOD.md, Encoders): a front end (waveform -> log-mel patch) and a CNN.

The model takes each frame's second of 16 kHz audio as a waveform; the front end that turns it
into a spectrogram patch belongs to the encoder, so the shards, the robustness probes and the
served model all handle plain audio whatever the encoder.

    vggish               the VGGish front end (25 ms windows, 10 ms hop, 64 HTK mel bands
                         125-7500 Hz, log(mel + 0.01), 96 x 64 patch) and a VGGish CNN
    aisfx                [ours] the EmbeddingNet of the PyPI wheel `aisfx` 0.1.2 (Ma et al.,
                         CC BY 4.0), pretrained on sound-effect libraries, with its own front
                         end rebuilt in torchaudio (44.1 kHz power mel, 96 HTK bands with
                         L1-normalised filters, 2048-sample windows, 1024 hop, log10(10^4 x + 1)
                         scaled by the ISMIR paper's maximum). Our audio is 16 kHz and is
                         resampled, so its bands above 8 kHz stay empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import nn

from avs.data.media import SAMPLE_RATE
from avs.model.weights import WeightsError, load_strict, read_state_dict

VGGISH_FRAMES = 96
VGGISH_BANDS = 64
VGGISH_LOG_OFFSET = 0.01
AISFX_RATE = 44100
AISFX_BANDS = 96
AISFX_SCALE = 9.457798957824707  # the ISMIR paper's spectrogram maximum ("original" normalisation)


class VGGishLogMel(nn.Module):
    """(N, 16000) waveforms at 16 kHz -> (N, 96, 64) VGGish log-mel patches."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=512,
            win_length=400,
            hop_length=160,
            f_min=125.0,
            f_max=7500.0,
            n_mels=VGGISH_BANDS,
            power=1.0,  # VGGish uses the magnitude, not the power, spectrum
            center=False,
            mel_scale="htk",
            norm=None,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.mel(waveform).transpose(1, 2)[:, :VGGISH_FRAMES]  # (N, 96, 64)
        return torch.log(mel + VGGISH_LOG_OFFSET)


class AisfxLogMel(nn.Module):
    """(N, 16000) waveforms at 16 kHz -> (N, 44, 96): aisfx's librosa front end at 44.1 kHz."""

    def __init__(self) -> None:
        super().__init__()
        self.resample = torchaudio.transforms.Resample(SAMPLE_RATE, AISFX_RATE)
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=2048, hop_length=1024, power=2.0, center=True)
        fbank = torchaudio.functional.melscale_fbanks(
            1025, 0.0, AISFX_RATE / 2, AISFX_BANDS, AISFX_RATE, norm=None, mel_scale="htk"
        )
        self.register_buffer("fbank", fbank / fbank.sum(0, keepdim=True).clamp(min=1e-12), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = self.resample(waveform)
        # aisfx peak-normalises each input; digital silence stays silence
        waveform = waveform / waveform.abs().amax(1, keepdim=True).clamp(min=1e-8)
        mel = self.spectrogram(waveform).transpose(1, 2) @ self.fbank  # (N, frames, 96)
        return torch.log10(mel * 10000.0 + 1) / AISFX_SCALE


class VGGish(nn.Module):
    """VGGish (Hershey et al., 2017): one (96, 64) log-mel patch per frame -> an embedding.

    Module names follow torchvggish, so its published weight file loads strictly.
    """

    def __init__(self, *, channels: Sequence[int] = (64, 128, 256, 512), hidden: int = 4096, embed_dim: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for block, width in enumerate(channels):  # VGG "A": 1, 1, 2, 2 convs per block
            for _ in range(1 if block < 2 else 2):
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(in_channels * 6 * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, embed_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Args: log_mel (N, 96, 64). Returns: (N, embed_dim)."""
        x = self.features(log_mel[:, None])  # (N, C, 6, 4)
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels last before flattening, as VGGish's TF original
        return self.embeddings(x)


class AudioEncoder(nn.Module):
    """A front end and a network: (N, 16000) waveforms -> (N, embed_dim) embeddings.

    Plain module: freezing it and remembering its embeddings are the training and evaluation
    code's choices (`avs.train.step.freeze_audio_encoder`, `avs.eval.audio_cache`).
    """

    def __init__(self, *, front_end: nn.Module, network: nn.Module, embed_dim: int):
        super().__init__()
        self.front_end = front_end
        self.network = network
        self.embed_dim = embed_dim

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Args: waveform (N, 16000). Returns: (N, embed_dim)."""
        # spectrograms in float32 even under bf16 autocast (the STFT has no bf16 kernel)
        with torch.autocast(waveform.device.type, enabled=False):
            patches = self.front_end(waveform.float())
        return self.network(patches)


def aisfx_checkpoint() -> Path:
    """The weight file inside the installed `aisfx` wheel."""
    try:
        import aisfx
    except ImportError:
        raise WeightsError(
            "audio encoder aisfx needs the `aisfx` wheel: pip install --no-deps aisfx==0.1.2 "
            "(requirements-nodeps.txt; `make setup` installs it)"
        ) from None
    return Path(aisfx.__file__).parent / "models" / "checkpoint.pth"


def read_aisfx_weights(path: Path) -> dict[str, torch.Tensor]:
    """The EmbeddingNet weights of an aisfx checkpoint (the wheel's `checkpoint.pth`).

    The file is a pickled (state dict, extras) pair; it is read with `weights_only=True`,
    allowing only the numpy scalar types it contains, never arbitrary objects.
    """
    import numpy.core.multiarray as multiarray

    if not path.is_file():
        raise WeightsError(f"{path}: aisfx checkpoint not found")
    allowed = [
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        np.dtypes.Int64DType,
        np.dtypes.Float64DType,
    ]
    with torch.serialization.safe_globals(allowed):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint[0] if isinstance(checkpoint, (tuple, list)) else checkpoint
    prefix = "embedding_net."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def build_audio_encoder(name: str, weights: str | Path | None = None) -> AudioEncoder:
    """`vggish` (the published network) or `aisfx`; weights from a local file, strictly.

    For `aisfx`, `weights=None` means the checkpoint shipped in the installed wheel.
    """
    if name == "vggish":
        network = VGGish()
        if weights is not None:
            load_strict(network, read_state_dict(weights), weights)
        return AudioEncoder(front_end=VGGishLogMel(), network=network, embed_dim=128)
    if name == "aisfx":
        path = Path(weights) if weights is not None else aisfx_checkpoint()
        from aisfx.models.cnn2d import EmbeddingNet

        network = EmbeddingNet("max", 3, 1, 64)  # the wheel's own configuration (aisfx/inference.py)
        state = read_aisfx_weights(path) if path.suffix == ".pth" else read_state_dict(path)
        load_strict(network, state, path)
        return AudioEncoder(front_end=AisfxLogMel(), network=network, embed_dim=network.hl4)
    raise ValueError(f"unknown audio encoder {name!r} (expected vggish or aisfx)")
