"""The `evaluate` stage: the trained model on the test split, clean and with its audio perturbed.

Reads `models/<dataset>/` and the test shards; writes
    metrics/evaluate.json          test J/F (AVSBench, per subset, per-dataset protocol, AVSS when
                                   71 classes), calibration, robustness, attribution (whether the
                                   sounding object gets more probability than a silent one in view)
    metrics/reliability.csv        the reliability diagram's bins (DVC plots)
    metrics/robustness.csv         J under each audio condition, model and visual-only (DVC plots)
    reports/<dataset>/evaluation/  reliability.png, overlays/*.png
(`avs.track.evaluation.log_evaluation` then logs all of it to the training's MLflow run).
Scoring is `avs.eval.scoring`, the pictures `avs.eval.plots`.
The model runs at `evaluate.image_size` (flip-averaged with `evaluate.flip`; avs/eval/inference.py)
and every metric is computed at that size.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from avs.config import Config
from avs.data.audio import from_pcm16
from avs.data.batch import ClipBatch
from avs.data.preprocess import read_manifest
from avs.data.sources.avsbench import AVSS_CLIP_FRAMES
from avs.data.stream import DecodeClips, max_frames, shard_files
from avs.eval.audio_cache import AudioEmbeddingCache
from avs.eval.inference import inference_size, segment
from avs.eval.plots import draw_overlays, plot_reliability
from avs.eval.robustness import muted, swapped, with_noise
from avs.eval.scoring import EvaluationScores
from avs.model.saved import load_model
from avs.paths import metrics_dir, model_dir, report_dir, shards_dir


def evaluate(cfg: Config, repo_root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Evaluate `models/<dataset>/` on `evaluate.split`; returns the metrics written to evaluate.json."""
    repo_root = repo_root.resolve()
    e = cfg.evaluate
    folder = model_dir(cfg, repo_root)
    torch.set_num_threads(os.cpu_count() or 1)
    model, model_cfg = load_model(folder)
    audio_cache = AudioEmbeddingCache(model.audio)  # nothing trains it here; the conditions repeat the seconds
    files = shard_files(shards_dir(cfg, repo_root), e.split)
    image_size, num_frames = inference_size(model_cfg, e), max_frames(files)
    if e.compat and model_cfg.data.dataset == "avss":
        num_frames = max(num_frames, AVSS_CLIP_FRAMES)  # avss/test.py pads every clip to 10 frames
    audio = torch.from_numpy(_read_audio(files, num_frames))  # (N, T, 16000), for swapping
    conditions = {
        "clean": None,
        "muted": muted,
        "swapped": None,
        **{f"noise_{snr:g}db": (lambda x, snr=snr: with_noise(x, snr)) for snr in e.noise_snr_db},
    }

    scores = EvaluationScores(
        model_cfg.num_classes,
        e.compat,
        absent_as_zero=e.absent_classes == "zero",
        avss=model_cfg.data.dataset == "avss",
    )
    swapped_audio = swapped(audio)
    reports = report_dir(cfg, repo_root)
    overlays: list[Path] = []
    subsets = read_manifest(shards_dir(cfg, repo_root))["splits"][e.split]["subsets"]
    overlay_quota = {
        s: e.overlays // len(subsets) + (i < e.overlays % len(subsets)) for i, s in enumerate(sorted(subsets))
    }
    seen = 0
    bar = tqdm(total=len(audio), desc="evaluate", unit="clip", disable=not progress)
    with torch.inference_mode():
        for batch in decoded_batches(files, image_size, num_frames, e.batch_size):
            frames = batch.frames.float() / 255
            rows = slice(seen, seen + len(batch.clip_id))
            for name, perturb in conditions.items():
                waveform = (
                    swapped_audio[rows] if name == "swapped" else perturb(batch.audio) if perturb else batch.audio
                )
                outputs = segment(
                    model,
                    frames,
                    waveform,
                    size=image_size,
                    flip=e.flip,
                    guided_kernel=e.guided_kernel,
                    guided_eps=e.guided_eps,
                    embed_audio=audio_cache,
                )
                scores.update(name, batch, outputs)
                if name == "clean":
                    overlays += draw_overlays(batch, outputs, reports / "overlays", overlay_quota)
            seen += len(batch.clip_id)
            bar.update(len(batch.clip_id))
    bar.close()

    metrics = scores.compute()
    metrics["clips"] = seen
    metrics["protocol"] = {
        "image_size": image_size,
        "flip": e.flip,
        "guided_kernel": e.guided_kernel,
        "guided_eps": e.guided_eps,
    }  # test-time settings (avs/eval/inference.py)
    _write_outputs(repo_root, reports, scores, metrics)
    return metrics


def _read_audio(files: list[str], num_frames: int) -> np.ndarray:
    """Every clip's audio, in shard order, padded with silence to `num_frames` frames' worth
    (as `DecodeClips` pads each batch)."""
    clips = []
    for path in files:
        table = pq.read_table(path, columns=["audio", "num_frames"])
        for seconds, frames in zip(table["audio"].to_pylist(), table["num_frames"].to_pylist()):
            array = from_pcm16(seconds)  # (k T, 16000)
            missing = (num_frames - frames) * (len(array) // frames)
            clips.append(np.concatenate([array, np.zeros((missing, array.shape[1]), np.float32)]))
    return np.stack(clips)


def decoded_batches(files: list[str], image_size: int, num_frames: int, batch_size: int) -> Iterator[ClipBatch]:
    """The clips of `files`, decoded and resized (no augmentation, as in validation), in shard order."""
    decode = DecodeClips(image_size=image_size, num_frames=num_frames, augment=None)
    for path in files:
        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            yield ClipBatch.from_numpy(decode(pa.Table.from_batches([record_batch])))


def _write_outputs(repo_root: Path, reports: Path, scores: EvaluationScores, metrics: dict[str, Any]) -> None:
    """evaluate.json, the reliability and robustness tables (DVC plots) and the reliability diagram."""
    folder = metrics_dir(repo_root)
    folder.mkdir(exist_ok=True)
    reports.mkdir(parents=True, exist_ok=True)
    (folder / "evaluate.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with open(folder / "reliability.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["confidence_bin", "final_accuracy", "raw_accuracy", "final_share", "raw_share"])
        final, raw = scores.calibration["final"].reliability(), scores.calibration["raw"].reliability()
        for f, r in zip(final, raw):
            writer.writerow(
                [
                    round((f["bin_low"] + f["bin_high"]) / 2, 4),
                    _csv(f["accuracy"]),
                    _csv(r["accuracy"]),
                    round(f["share"], 6),
                    round(r["share"], 6),
                ]
            )
    with open(folder / "robustness.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "model_J", "visual_only_J"])
        for condition in scores.conditions:
            visual = metrics["robustness"].get(f"visual_only_{condition}_J", float("nan"))
            writer.writerow([condition, _csv(metrics["robustness"][f"{condition}_J"]), _csv(visual)])
    plot_reliability(
        {"final (1-u)m": scores.calibration["final"], "raw m": scores.calibration["raw"]},
        reports / "reliability.png",
        title="Reliability on the test split",
    )


def _csv(value: float) -> str:
    return "" if value != value else f"{value:.6f}"
