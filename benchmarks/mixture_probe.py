"""Does the frozen audio embedding still tell which objects sound when several sound at once?

A linear probe (logistic regression on `model.audio_encoder`'s embedding, frozen as in the model)
learns to name the sounding stamp from the single-source seconds of the `s4` train and val clips.
It then scores every test second of `ms3` and `hard` that has a sounding and a silent object in
view: for each pair of a sounding and a silent object of that second (their stamps read from the
embedded set's plan, `mixed_frames.planned_objects`), does the sounding one's stamp get the
higher probability? The share of such pairs, by how many objects sound, says whether a mixture of
sounds blurs the embedding (two of three sounding: a mixture; one of two or three: a single
source). Pairs whose stamps the probe never saw are left out. Writes
benchmarks/results/mixture_probe.{json,md}.

    python benchmarks/mixture_probe.py   # after `dvc repro preprocess`
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from avs.config import load_config
from avs.data.audio import from_pcm16
from avs.data.stages import shards_dir
from avs.model.audio import build_audio_encoder
from mixed_frames import planned_objects  # benchmarks/mixed_frames.py

SUBSETS = ("s4", "ms3", "hard")


def seconds(cfg, repo: Path, objects: dict[str, list[tuple[str, tuple[bool, ...]]]]) -> list[dict]:
    """Every second of every clip in the shards: split, subset, clip id, index and 16 kHz audio.

    Checks each clip against the plan (`planned_objects`): its length, and each second's
    sounding flag (something sounds in it exactly when the plan has a sounding object then).
    """
    rows = []
    for split in ("train", "val", "test"):
        for shard in sorted((shards_dir(cfg, repo) / split).glob("*.parquet")):
            for clip in pq.read_table(shard, columns=["clip_id", "subset", "sounding", "audio"]).to_pylist():
                planned = [any(flags) for flags in zip(*(flags for _, flags in objects[clip["clip_id"]]))]
                if planned != clip["sounding"]:
                    raise SystemExit(f"{shard}: clip {clip['clip_id']} sounds in seconds {clip['sounding']}, the plan "
                                     f"says {planned}; is {cfg.stamps.deb_dir} the package the set was built from?")
                for t, audio in enumerate(from_pcm16(clip["audio"])):
                    rows.append({"split": split, "subset": clip["subset"], "clip_id": clip["clip_id"], "t": t, "audio": audio})
    return rows


@torch.no_grad()
def embed(rows: list[dict], encoder_name: str) -> np.ndarray:
    encoder = build_audio_encoder(encoder_name, frozen=True).eval()
    waveform = torch.from_numpy(np.stack([r["audio"] for r in rows]))
    return torch.cat([encoder(chunk) for chunk in waveform.split(256)]).numpy()


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = load_config("params.yaml")
    repo = Path(".").resolve()
    torch.set_num_threads(os.cpu_count() or 1)
    objects = planned_objects(cfg, repo, SUBSETS)
    rows = seconds(cfg, repo, objects)
    features = embed(rows, cfg.model.audio_encoder)
    single = [i for i, r in enumerate(rows) if r["subset"] == "s4" and r["split"] != "test"]
    labels = [objects[rows[i]["clip_id"]][0][0] for i in single]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0)).fit(features[single], labels)
    column = {name: k for k, name in enumerate(probe.classes_)}
    probs = probe.predict_proba(features)
    correct, pairs = defaultdict(int), defaultdict(int)
    for i, r in enumerate(rows):
        if r["split"] != "test" or r["subset"] == "s4":
            continue
        scene = objects[r["clip_id"]]
        on = [name for name, flags in scene if flags[r["t"]]]
        off = [name for name, flags in scene if not flags[r["t"]]]
        kind = f"{r['subset']}: {len(on)} of {len(scene)} sounding"
        for a in on:
            for b in off:
                if a in column and b in column:
                    pairs[kind] += 1
                    correct[kind] += probs[i, column[a]] > probs[i, column[b]]
    lines = [f"# Which object sounds, from the frozen {cfg.model.audio_encoder} embedding alone (linear probe, one run)", "",
             f"Probe fitted on {len(single)} single-source seconds of the s4 train and val clips ({len(column)} stamps). "
             "A pair: a sounding and a silent object in view in the same test second; right when the sounding one's "
             "stamp gets the higher probability (0.5: chance).", "",
             "| test seconds | pairs | sounding object ranked above the silent one |", "|---|---|---|"]
    lines += [f"| {kind} | {pairs[kind]} | {correct[kind] / pairs[kind]:.3f} |" for kind in sorted(pairs)]
    result = {"benchmark": "mixture_probe", "encoder": cfg.model.audio_encoder, "fitted_seconds": len(single),
              "pairs": dict(pairs), "share_right": {k: correct[k] / pairs[k] for k in pairs}}
    out = Path("benchmarks/results")
    (out / "mixture_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "mixture_probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
