"""Would a pretrained audio encoder help the embedded set? A linear probe on its sounds.

Task: name the sounding stamp from one second of a `s4` clip's audio (one object sounds
throughout). Embeddings of every second of every s4 clip; a logistic-regression probe fitted on
the train and val clips and scored on the test clips' seconds whose category occurs in training
(test clips are unseen compositions; the recordings are the stamps' own, shared across clips).
Encoders compared on the same audio (the 16 kHz track the pipeline reads):
  aisfx               `model.audio_encoder: aisfx` (avs/model/audio.py): the pretrained
                      EmbeddingNet of the PyPI wheel `aisfx` 0.1.2 (CC BY 4.0) and its front end
  trained (...)       the audio encoder of the trained model in models/stamps, if there is one
  random vggish_lite  `vggish_lite` at random initialisation (the floor)
Writes benchmarks/results/audio_encoder_probe.md. Needs `dvc repro` (the shards, and the model)
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

from avs.data.audio import from_pcm16
from avs.model.audio import build_audio_encoder
from avs.model.saved import load_model


def s4_seconds(repo: Path) -> list[dict]:
    """Every second of every s4 clip in the shards: its split, category and 16 kHz audio."""
    rows = []
    for split in ("train", "val", "test"):
        for shard in sorted((repo / "data/shards/stamps" / split).glob("*.parquet")):
            table = pq.read_table(shard, columns=["subset", "category_ids", "audio"])
            for clip in table.to_pylist():
                if clip["subset"] != "s4":
                    continue
                for second in from_pcm16(clip["audio"]):
                    rows.append({"split": split, "category": clip["category_ids"][0], "audio": second})
    return rows


@torch.no_grad()
def embed(rows: list[dict], model_folder: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    waveform = torch.from_numpy(np.stack([r["audio"] for r in rows]))  # (N, 16000)
    encoders = {"aisfx": build_audio_encoder("aisfx", frozen=True)}
    if (model_folder / "model.safetensors").is_file():
        trained, cfg = load_model(model_folder)
        encoders[f"trained ({cfg.model.audio_encoder})"] = trained.audio
    torch.manual_seed(0)
    encoders["random vggish_lite"] = build_audio_encoder("vggish_lite")
    out, timings = {}, {}
    for name, encoder in encoders.items():
        started = time.perf_counter()
        out[name] = encoder.eval()(waveform).numpy()
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
