"""The `evaluate` stage: the trained model on the test split, clean and with its audio perturbed.

Reads `models/<dataset>/` and the test shards; writes
    metrics/evaluate.json          test J/F (AVSBench, per subset, per-dataset protocol, AVSS when
                                   71 classes), calibration, robustness, attribution (whether the
                                   sounding object gets more probability than a silent one in view)
    metrics/reliability.csv        the reliability diagram's bins (DVC plots)
    metrics/robustness.csv         J under each audio condition, model and visual-only (DVC plots)
    reports/<dataset>/evaluation/  reliability.png, overlays/*.png, mlflow.json (the run logged to)
and logs all of it to the training's MLflow run (a new run when the store does not have it).
The model runs at `evaluate.image_size` (flip-averaged with `evaluate.flip`; avs/eval/inference.py)
and every metric is computed at that size.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import defaultdict
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
from avs.data.preprocess import read_manifest
from avs.data.sources.avsbench import AVSS_CLIP_FRAMES
from avs.data.stages import shards_dir
from avs.data.stream import ClipBatch, DecodeClips, max_frames, shard_files
from avs.eval.attribution import SoundingPickMeter
from avs.eval.calibration import CalibrationMeter, plot_reliability
from avs.eval.inference import inference_size, segment
from avs.eval.metrics import BinaryMeter, DatasetMeter, SemanticMeter
from avs.eval.robustness import muted, swapped, with_noise
from avs.model.saved import class_probabilities, foreground_probability, load_model, model_dir
from avs.track.runs import get_or_create_experiment
from avs.track.runs import tracking_uri as default_tracking_uri


def report_dir(cfg: Config, repo_root: Path = Path(".")) -> Path:
    """The evaluate stage's folder of images and its MLflow run id."""
    return repo_root / "reports" / cfg.data.dataset / "evaluation"


def evaluate(cfg: Config, repo_root: Path = Path("."), progress: bool = True, tracking_uri: str | None = None) -> dict[str, Any]:
    """Evaluate `models/<dataset>/` on `evaluate.split`; returns the metrics written to evaluate.json."""
    repo_root = repo_root.resolve()
    e = cfg.evaluate
    folder = model_dir(cfg, repo_root)
    torch.set_num_threads(os.cpu_count() or 1)
    model, model_cfg = load_model(folder)
    model.audio.remember_in_eval = True  # nothing trains it here; the mirrored pass and swapped probe repeat seconds
    files = shard_files(shards_dir(cfg, repo_root), e.split)
    image_size, num_frames = inference_size(model_cfg, e), max_frames(files)
    if e.compat and model_cfg.data.dataset == "avss":
        num_frames = max(num_frames, AVSS_CLIP_FRAMES)  # avss/test.py pads every clip to 10 frames
    audio = torch.from_numpy(_read_audio(files, num_frames))  # (N, T, 16000), for swapping
    conditions = {"clean": None, "muted": muted, "swapped": None,
                  **{f"noise_{snr:g}db": (lambda x, snr=snr: with_noise(x, snr)) for snr in e.noise_snr_db}}

    scores = _Scores(model_cfg.num_classes, e.compat, absent_as_zero=e.absent_classes == "zero",
                     avss=model_cfg.data.dataset == "avss")
    swapped_audio = swapped(audio)
    reports = report_dir(cfg, repo_root)
    overlays: list[Path] = []
    subsets = read_manifest(shards_dir(cfg, repo_root))["splits"][e.split]["subsets"]
    overlay_quota = {s: e.overlays // len(subsets) + (i < e.overlays % len(subsets)) for i, s in enumerate(sorted(subsets))}
    seen = 0
    bar = tqdm(total=len(audio), desc="evaluate", unit="clip", disable=not progress)
    with torch.inference_mode():
        for batch in decoded_batches(files, image_size, num_frames, e.batch_size):
            frames = batch.frames.float() / 255
            rows = slice(seen, seen + len(batch.clip_id))
            for name, perturb in conditions.items():
                waveform = swapped_audio[rows] if name == "swapped" else perturb(batch.audio) if perturb else batch.audio
                outputs = segment(model, frames, waveform, size=image_size, flip=e.flip,
                                  guided_kernel=e.guided_kernel, guided_eps=e.guided_eps)
                scores.update(name, batch, outputs)
                if name == "clean":
                    overlays += _draw_overlays(batch, outputs, reports / "overlays", overlay_quota)
            seen += len(batch.clip_id)
            bar.update(len(batch.clip_id))
    bar.close()

    metrics = scores.compute()
    metrics["clips"] = seen
    metrics["protocol"] = {"image_size": image_size, "flip": e.flip,
                           "guided_kernel": e.guided_kernel, "guided_eps": e.guided_eps}  # test-time settings (avs/eval/inference.py)
    _write_outputs(repo_root, reports, scores, metrics)
    uri = tracking_uri or default_tracking_uri(cfg, repo_root)
    run_id = log_to_mlflow(uri, cfg, folder, reports, metrics, repo_root / "metrics" / "evaluate.json")
    (reports / "mlflow.json").write_text(json.dumps({"run_id": run_id}, indent=1) + "\n")
    return metrics


class _Scores:
    """Every meter the evaluation fills, by condition."""

    def __init__(self, num_classes: int, compat: bool, absent_as_zero: bool = False, avss: bool = False):
        self.num_classes = num_classes
        self.conditions: list[str] = []
        self.binary: dict[str, BinaryMeter] = defaultdict(BinaryMeter)  # "<condition>:<subset>"
        self.compat = BinaryMeter(compat=True) if compat else None
        self.dataset = DatasetMeter(max(2, num_classes), absent_as_zero=absent_as_zero)
        self.semantic = SemanticMeter(num_classes) if num_classes > 1 else None
        self.semantic_compat = SemanticMeter(num_classes, all_classes=True) if compat and avss else None
        self.visual_only: dict[str, BinaryMeter] = defaultdict(BinaryMeter)  # "<clean|muted>:<subset>"
        self.calibration: dict[str, CalibrationMeter] = defaultdict(CalibrationMeter)  # final/raw x all/transition
        self.picks: dict[str, SoundingPickMeter] = defaultdict(SoundingPickMeter)  # by subset, clips with visible masks
        # J and F of the final p' and of the raw head m, on all frames and on sounding-state transitions
        self.heads: dict[str, BinaryMeter] = defaultdict(BinaryMeter)  # "<final|raw><|_transition>"

    def update(self, condition: str, batch: ClipBatch, outputs: dict[str, Any]) -> None:
        if condition not in self.conditions:
            self.conditions.append(condition)
        probs = foreground_probability(outputs["logits"])  # (B, T, H, W)
        silent = condition == "muted"  # muted audio: nothing sounds, the right answer is empty
        truth = torch.zeros_like(batch.masks, dtype=torch.bool) if silent else batch.masks > 0
        labelled = batch.labelled
        for index, subset in enumerate(batch.subset):
            keep = labelled[index]
            visible = batch.visible[index][keep] if batch.has_visible[index] else None
            for name in (subset, "all"):
                self.binary[f"{condition}:{name}"].update(probs[index][keep], truth[index][keep])
                if visible is not None and condition in ("clean", "muted"):
                    self.visual_only[f"{condition}:{name}"].update(visible.float(), truth[index][keep])
                if visible is not None and condition == "clean":
                    self.picks[name].update(probs[index][keep], truth[index][keep], visible > 0)
        if condition != "clean":
            return
        if self.compat is not None:
            self.compat.update(probs[labelled], truth[labelled])
        class_probs = class_probabilities(outputs["logits"])  # (B, T, K, H, W)
        classes = batch.masks.long() if self.num_classes > 1 else truth.long()
        self.dataset.update(class_probs.argmax(2)[labelled], classes[labelled])
        if self.semantic is not None:
            self.semantic.update(class_probs.argmax(2)[labelled], classes[labelled])
        if self.semantic_compat is not None:  # avss/test.py scores the padded frames as background
            scored = labelled if batch.padded is None else labelled | batch.padded
            self.semantic_compat.update(class_probs.argmax(2)[scored], classes[scored])
        # frames whose sounding state differs from the previous frame's
        transition = torch.zeros_like(labelled)
        transition[:, 1:] = batch.sounding[:, 1:] != batch.sounding[:, :-1]
        raw_probs = foreground_probability(outputs["mask_logits"])
        for name, p in (("final", probs), ("raw", raw_probs)):
            for frames, suffix in ((labelled, ""), (labelled & transition, "_transition")):
                if name + suffix != "final":  # final on all frames: the test J above
                    self.heads[name + suffix].update(p[frames], truth[frames])
        u = outputs["uncertainty"]
        raw = class_probabilities(outputs["mask_logits"])
        for name, p in (("final", class_probs), ("raw", raw)):
            for frames, suffix in ((labelled, ""), (labelled & transition, "_transition")):
                self.calibration[name + suffix].update(
                    p[frames], classes[frames], None if u is None else u[frames])

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {"test": {}, "calibration": {}, "robustness": {}, "attribution": {}}
        for key, meter in sorted(self.binary.items()):
            condition, subset = key.split(":")
            result = meter.compute()
            if condition == "clean":
                prefix = "" if subset == "all" else f"{subset}_"
                out["test"][f"{prefix}J"], out["test"][f"{prefix}F"] = result["J"], result["F"]
            if subset == "all":
                out["robustness"][f"{condition}_J"] = result["J"]
            else:
                out["robustness"][f"{condition}_{subset}_J"] = result["J"]
        out["test"]["frames"] = self.binary["clean:all"].compute()["frames"]
        if self.compat is not None:
            compat = self.compat.compute()
            out["test"]["compat_J"], out["test"]["compat_F"] = compat["J"], compat["F"]
        dataset = self.dataset.compute()
        out["test"].update({"dataset_J": dataset["J"], "dataset_F": dataset["F"], "dataset_J&F": dataset["J&F"]})
        if self.semantic is not None:
            semantic = self.semantic.compute()
            out["test"].update({"avss_mIoU": semantic["J"], "avss_F": semantic["F"]})
        if self.semantic_compat is not None:
            semantic = self.semantic_compat.compute()
            out["test"].update({"avss_compat_mIoU": semantic["J"], "avss_compat_F": semantic["F"]})
        for name, meter in sorted(self.heads.items()):
            result = meter.compute()
            if result["frames"]:
                prefix = name.removeprefix("final_") + "_"  # transition_J, raw_J, raw_transition_J
                out["test"][f"{prefix}J"], out["test"][f"{prefix}F"] = result["J"], result["F"]
        for name, meter in sorted(self.calibration.items()):
            out["calibration"][name] = {k: v for k, v in meter.compute().items()}
        for subset, meter in sorted(self.picks.items()):
            if meter.frames:  # s4 never has a silent object; datasets without visible masks have none
                out["attribution"].update({f"{subset}_{k}": v for k, v in meter.compute().items()})
        for key, meter in sorted(self.visual_only.items()):
            condition, subset = key.split(":")
            out["robustness"][f"visual_only_{condition}" + ("" if subset == "all" else f"_{subset}") + "_J"] = meter.compute()["J"]
        return out


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


def _draw_overlays(batch: ClipBatch, outputs: dict[str, Any], folder: Path, quota: dict[str, int]) -> list[Path]:
    """One PNG per clip while its subset's `quota` lasts: rows frame / truth / prediction / uncertainty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    probs = foreground_probability(outputs["logits"])
    u = outputs["uncertainty"]
    written = []
    for index, subset in enumerate(batch.subset):
        if quota.get(subset, 0) <= 0:
            continue
        quota[subset] -= 1
        frames = int(batch.labelled[index].sum()) or batch.frames.shape[1]
        figure, axes = plt.subplots(4, frames, figsize=(1.6 * frames, 6.6), squeeze=False)
        for t in range(frames):
            image = batch.frames[index, t].permute(1, 2, 0).numpy()
            panels = [(image, None), (batch.masks[index, t].numpy() > 0, "gray"), (probs[index, t].numpy() > 0.5, "gray"),
                      (u[index, t].numpy() if u is not None else np.zeros(image.shape[:2]), "magma")]
            for row, (panel, cmap) in enumerate(panels):
                axes[row, t].imshow(panel, cmap=cmap, vmin=0, vmax=1 if cmap else None)
                axes[row, t].set_axis_off()
            axes[0, t].set_title(f"t={t}" + (" sounding" if batch.sounding[index, t] else ""), fontsize=7)
        for row, label in enumerate(("frame", "truth", "prediction", "uncertainty")):
            axes[row, 0].text(-0.1, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
        figure.suptitle(f"{batch.clip_id[index]} ({batch.subset[index]})", fontsize=9)
        figure.tight_layout()
        path = folder / f"{batch.clip_id[index].replace('/', '_')}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def _write_outputs(repo_root: Path, reports: Path, scores: _Scores, metrics: dict[str, Any]) -> None:
    metrics_dir = repo_root / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    reports.mkdir(parents=True, exist_ok=True)
    (metrics_dir / "evaluate.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with open(metrics_dir / "reliability.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["confidence_bin", "final_accuracy", "raw_accuracy", "final_share", "raw_share"])
        final, raw = scores.calibration["final"].reliability(), scores.calibration["raw"].reliability()
        for f, r in zip(final, raw):
            writer.writerow([round((f["bin_low"] + f["bin_high"]) / 2, 4), _csv(f["accuracy"]), _csv(r["accuracy"]),
                             round(f["share"], 6), round(r["share"], 6)])
    with open(metrics_dir / "robustness.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "model_J", "visual_only_J"])
        for condition in scores.conditions:
            visual = metrics["robustness"].get(f"visual_only_{condition}_J", float("nan"))
            writer.writerow([condition, _csv(metrics["robustness"][f"{condition}_J"]), _csv(visual)])
    plot_reliability({"final (1-u)m": scores.calibration["final"], "raw m": scores.calibration["raw"]},
                     reports / "reliability.png", title="Reliability on the test split")


def _csv(value: float) -> str:
    return "" if value != value else f"{value:.6f}"


def log_to_mlflow(uri: str, cfg: Config, folder: Path, reports: Path, metrics: dict[str, Any], metrics_file: Path) -> str:
    """Log to the training's run when this store has it, else to a new run; returns the run id."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    state = json.loads((folder / "state.json").read_text()) if (folder / "state.json").is_file() else {}
    run_id = state.get("run_id")
    try:
        run_id = client.get_run(run_id).info.run_id if run_id else None
    except MlflowException:
        run_id = None
    if run_id is None:  # e.g. a model trained against another tracking store
        experiment_id = get_or_create_experiment(client, uri, cfg.train.experiment)
        run_id = client.create_run(experiment_id, run_name=f"evaluate-{cfg.data.dataset}",
                                   tags={"avs.dataset": cfg.data.dataset, "avs.trained_run": str(state.get("run_id"))}).info.run_id
    flat = {f"test/{k}": v for k, v in metrics["test"].items()}
    flat.update({f"calibration/{name}/{k}": v for name, row in metrics["calibration"].items() for k, v in row.items()})
    flat.update({f"robustness/{k}": v for k, v in metrics["robustness"].items()})
    flat.update({f"attribution/{k}": v for k, v in metrics["attribution"].items()})
    now = int(time.time() * 1000)
    entries = [Metric(k.replace("&", "and"), float(v), now, 0) for k, v in flat.items() if isinstance(v, (int, float)) and math.isfinite(v)]
    for start in range(0, len(entries), 500):
        client.log_batch(run_id, metrics=entries[start:start + 500])
    protocol = metrics["protocol"]
    client.set_tag(run_id, "avs.test_time", f"{protocol['image_size']} px" + (", flip-averaged" if protocol["flip"] else "")
                   + (f", guided filter {protocol['guided_kernel']} px" if protocol["guided_kernel"] else ""))
    client.log_artifact(run_id, str(metrics_file), "evaluation")
    client.log_artifact(run_id, str(reports / "reliability.png"), "evaluation")
    if (reports / "overlays").is_dir():
        client.log_artifacts(run_id, str(reports / "overlays"), "evaluation/overlays")
    return run_id
