"""Would a pretrained audio encoder help the embedded set? A linear probe on its sounds.

Task: name the sounding stamp from one second of a `s4` clip's audio (one object sounds
throughout). Embeddings of every second of every s4 clip; a logistic-regression probe fitted on
the train and val clips and scored on the test clips' seconds whose category occurs in training
(test clips are unseen compositions; the recordings are the stamps' own, shared across clips).
Encoders compared on the same audio (the 16 kHz track the pipeline reads):
  aisfx          the EmbeddingNet of the PyPI wheel `aisfx` 0.1.2 (CC BY 4.0), pretrained on
                 sound-effect libraries, with its own front end (44.1 kHz, 96 power-mel bands,
                 log10(10^4 x + 1), ISMIR min-max scaling) rebuilt with torchaudio; our audio is
                 upsampled from 16 kHz, so its bands above 8 kHz are empty
  trained lite   the `vggish_lite` audio encoder of the trained default model (models/stamps)
  random lite    the same architecture at random initialisation (the floor)
Writes benchmarks/results/audio_encoder_probe.md. Needs `dvc repro` (raw clips, shards, model)
and aisfx (installed by the set-up, without its dependencies: see requirements-nodeps.txt).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torchaudio

from avs.data.media import SAMPLE_RATE, read_audio
from avs.model.encoders import build_audio_encoder
from avs.model.saved import load_model

AISFX_RATE = 44100
AISFX_SCALE = 9.457798957824707  # the ISMIR paper's spectrogram maximum ("original" normalisation)


def load_aisfx() -> torch.nn.Module:
    """aisfx's EmbeddingNet with its checkpoint, read with weights_only=True (numpy scalars allowed)."""
    import aisfx
    import numpy.core.multiarray as multiarray
    from aisfx.models.cnn2d import EmbeddingNet

    path = Path(aisfx.__file__).parent / "models" / "checkpoint.pth"
    allowed = [(multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Int64DType, np.dtypes.Float64DType]
    with torch.serialization.safe_globals(allowed):
        weights, _ = torch.load(path, map_location="cpu", weights_only=True)
    net = EmbeddingNet("max", 3, 1, 64)
    net.load_state_dict({k.removeprefix("embedding_net."): v for k, v in weights.items() if k.startswith("embedding_net.")})
    return net.eval()


class AisfxFrontEnd(torch.nn.Module):
    """aisfx's librosa front end: power mel (htk, L1-normalised filters, centred frames), log10, scaled."""

    def __init__(self) -> None:
        super().__init__()
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=2048, hop_length=1024, power=2.0, center=True)
        fbank = torchaudio.functional.melscale_fbanks(1025, 0.0, AISFX_RATE / 2, 96, AISFX_RATE, norm=None, mel_scale="htk")
        self.register_buffer("fbank", fbank / fbank.sum(0, keepdim=True).clamp(min=1e-12))  # librosa norm=1.0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(N, samples) at 44.1 kHz, each peak-normalised -> (N, frames, 96)."""
        waveform = waveform / waveform.abs().amax(1, keepdim=True).clamp(min=1e-8)
        mel = self.spectrogram(waveform).transpose(1, 2) @ self.fbank  # (N, frames, 96)
        return torch.log10(mel * 10000.0 + 1) / AISFX_SCALE


def s4_seconds(repo: Path) -> list[dict]:
    """Every second of every s4 clip: its split, category, 16 kHz audio and stored log-mel."""
    rows = []
    for split in ("train", "val", "test"):
        for shard in sorted((repo / "data/shards/stamps" / split).glob("*.parquet")):
            table = pq.read_table(shard, columns=["clip_id", "subset", "category_ids", "log_mel", "num_frames"])
            for clip in table.to_pylist():
                if clip["subset"] != "s4":
                    continue
                name = clip["clip_id"].split("/")[-1]
                video = next((repo / "data/raw/stamps/s4_data/raw_videos").rglob(f"{name}.mp4"))
                audio = read_audio(video)
                log_mel = np.asarray(clip["log_mel"], np.float32).reshape(-1, 96, 64)
                for t in range(clip["num_frames"]):
                    rows.append({"split": split, "category": clip["category_ids"][0],
                                 "audio": audio[t * SAMPLE_RATE:(t + 1) * SAMPLE_RATE], "log_mel": log_mel[t]})
    return rows


@torch.no_grad()
def embed(rows: list[dict], model_folder: Path) -> dict[str, np.ndarray]:
    waveform = torch.from_numpy(np.stack([np.pad(r["audio"], (0, SAMPLE_RATE - len(r["audio"]))) for r in rows]))
    log_mel = torch.from_numpy(np.stack([r["log_mel"] for r in rows]))
    trained, _ = load_model(model_folder)
    torch.manual_seed(0)
    random_lite = build_audio_encoder("vggish_lite", None).eval()
    upsampled = torchaudio.functional.resample(waveform, SAMPLE_RATE, AISFX_RATE)
    out, timings = {}, {}
    for name, fn in {
        "aisfx": lambda: load_aisfx()(AisfxFrontEnd()(upsampled)),
        "trained lite": lambda: trained.eval().audio(log_mel),
        "random lite": lambda: random_lite(log_mel),
    }.items():
        started = time.perf_counter()
        out[name] = fn().numpy()
        timings[name] = (time.perf_counter() - started) / len(rows) * 1000
    return out, timings


def probe(features: np.ndarray, rows: list[dict]) -> tuple[float, int, int]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.array([r["category"] for r in rows])
    fit = np.array([r["split"] != "test" for r in rows])
    known = np.isin(labels, labels[fit])
    score = ~fit & known
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    classifier.fit(features[fit], labels[fit])
    return float((classifier.predict(features[score]) == labels[score]).mean()), int(fit.sum()), int(score.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/audio_encoder_probe.md"))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = s4_seconds(args.repo)
    features, timings = embed(rows, args.repo / "models/stamps")
    lines = ["# Audio encoders: linear probe on the embedded set's s4 sounds", "",
             "Made by `python benchmarks/audio_encoder_probe.py` (see its docstring); 2-core CPU.", "",
             "| encoder | dim | probe accuracy (test seconds) | ms per second of audio |", "|---|---|---|---|"]
    for name, x in features.items():
        accuracy, fitted, scored = probe(x, rows)
        lines.append(f"| {name} | {x.shape[1]} | {accuracy:.3f} | {timings[name]:.2f} |")
    lines += ["", f"{fitted} train/val seconds fitted, {scored} test seconds scored "
              f"({len({r['category'] for r in rows})} categories; chance about 1/{len({r['category'] for r in rows})})."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
