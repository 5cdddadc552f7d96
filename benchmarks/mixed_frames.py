"""The trained model on the embedded set's `ms3` and `hard` test frames, by how many objects are in
view and how many of them sound.

The stamps set's own plan (`avs.data.stamps.build.plan_subset`, the same seeded draws that wrote
the clips) tells, for every second of a clip, how many objects it shows and which of them sound.
The model runs as the evaluate stage runs it (`evaluate.image_size`, mirror averaging, guided
filter; clean audio) on `models/<dataset>/`. Per kind of frame: how many there are, the model's J
(frame mean), the J of every visible object drawn perfectly, and in frames with a silent object
in view the pick rate and the share of each region's pixels marked (`avs.eval.attribution`), and per
sounding object (a connected part of the truth) the share of its pixels marked. And the J of
the true objects voted in or out by the model: each connected part of the frame's visible-object
mask drawn whole where the model's mean sounding probability over it exceeds 0.5, else left out.
That is what the model's choice of which object sounds would score with perfect outlines, to set
against the perfectly drawn visible union (which chooses nothing).
Tells whether what the model gets wrong on `ms3` is tied to a mixture of sounds (several
objects sounding at once), which `hard` never has. Writes benchmarks/results/mixed_frames.{json,md}.

    python benchmarks/mixed_frames.py [--params params.yaml] [--model FOLDER --stem NAME]   # after `dvc repro`
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from avs.config import load_config
from avs.data.stages import shards_dir
from avs.data.stamps.assets import find_deb, load_backgrounds, load_stamps, same_recordings, unpack_deb, STAMPS_SUBDIR
from avs.data.stamps.build import plan_subset
from avs.data.stream import max_frames, shard_files
from avs.eval.attribution import MIN_PIXELS, SoundingPickMeter
from avs.eval.evaluate import decoded_batches
from avs.eval.inference import inference_size, segment
from avs.eval.metrics import frame_jaccard
from avs.model.saved import foreground_probability, load_model, model_dir
from model_cost import write_results  # benchmarks/model_cost.py

SUBSETS = ("ms3", "hard")
MISSED = 0.3  # a sounding object with less than this share of its pixels marked counts as missed


def planned_objects(cfg, repo: Path, subsets: tuple[str, ...] = SUBSETS) -> dict[str, list[tuple[str, tuple[bool, ...]]]]:
    """clip id (as in the shards) -> each object's stamp name and per-second sounding flags, from
    the set's plan (the unpacked package of `stamps.deb_dir`)."""
    unpacked = unpack_deb(find_deb(repo / cfg.stamps.deb_dir), repo / cfg.stamps.unpack_dir)
    stamps = load_stamps(unpacked / STAMPS_SUBDIR)
    backgrounds, alike = load_backgrounds(), same_recordings(stamps)
    return {f"{subset}/{clip.name}": [(obj.stamp.name, obj.sounding) for obj in clip.scene.objects]
            for subset in subsets for clip in plan_subset(cfg.stamps, subset, stamps, backgrounds, alike)}


def sounding_schedules(cfg, repo: Path) -> dict[str, list[tuple[bool, ...]]]:
    """clip id -> per second, each object's sounding flag."""
    return {clip: list(zip(*(flags for _, flags in objects))) for clip, objects in planned_objects(cfg, repo).items()}


def voted_objects(probs: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: each connected part of `visible` kept whole where the mean of `probs` (H, W)
    over it exceeds 0.5, else dropped: the true outlines, chosen by the model."""
    parts, count = ndimage.label(visible.numpy())
    if not count:
        return torch.zeros_like(visible)
    means = ndimage.mean(probs.numpy(), parts, index=np.arange(1, count + 1))
    return torch.from_numpy(np.isin(parts, 1 + np.flatnonzero(means > 0.5)))


class FrameKindMeter:
    """Frame-mean J of the model and of the visible union, and the mixed-frame attribution."""

    def __init__(self) -> None:
        self.frames, self.sum_j, self.sum_union_j, self.sum_voted_j = 0, 0.0, 0.0, 0.0
        self.mixed = SoundingPickMeter()
        self.object_covered: list[float] = []  # per sounding object (a connected part of the truth)

    def update(self, probs: torch.Tensor, sounding: torch.Tensor, visible: torch.Tensor) -> None:
        """probs (H, W); sounding, visible (H, W) bool: one frame."""
        self.frames += 1
        self.sum_j += frame_jaccard((probs > 0.5).flatten()[None], sounding.flatten()[None]).item()
        self.sum_union_j += frame_jaccard(visible.flatten()[None], sounding.flatten()[None]).item()
        self.sum_voted_j += frame_jaccard(voted_objects(probs, visible).flatten()[None], sounding.flatten()[None]).item()
        self.mixed.update(probs[None], sounding[None], visible[None])
        parts, count = ndimage.label(sounding.numpy())
        marked = (probs > 0.5).numpy()
        self.object_covered += [marked[parts == k].mean() for k in range(1, count + 1) if (parts == k).sum() >= MIN_PIXELS]

    def compute(self) -> dict[str, float]:
        mixed = self.mixed.compute()
        covered = np.array(self.object_covered)
        return {"frames": self.frames, "J": self.sum_j / self.frames, "union_J": self.sum_union_j / self.frames,
                "voted_J": self.sum_voted_j / self.frames,
                "objects": len(covered), "object_covered_median": float(np.median(covered)) if len(covered) else float("nan"),
                "objects_missed": float((covered < MISSED).mean()) if len(covered) else float("nan"),
                "mixed_frames": mixed["frames"], "pick_rate": mixed["pick_rate"],
                "sounding_covered": mixed["sounding_covered"], "silent_covered": mixed["silent_covered"]}


def measure(cfg, repo: Path, folder: Path) -> dict[str, dict[str, float]]:
    """Every kind of frame's figures for the model saved in `folder`."""
    schedules = sounding_schedules(cfg, repo)
    torch.set_num_threads(os.cpu_count() or 1)
    model, model_cfg = load_model(folder)
    files = shard_files(shards_dir(cfg, repo), cfg.evaluate.split)
    e, size = cfg.evaluate, inference_size(model_cfg, cfg.evaluate)
    meters: dict[str, FrameKindMeter] = defaultdict(FrameKindMeter)
    with torch.inference_mode():
        for batch in decoded_batches(files, size, max_frames(files), e.batch_size):
            if not any(s in SUBSETS for s in batch.subset):
                continue
            outputs = segment(model, batch.frames.float() / 255, batch.audio, size=size, flip=e.flip,
                              guided_kernel=e.guided_kernel, guided_eps=e.guided_eps)
            probs = foreground_probability(outputs["logits"])  # (B, T, H, W)
            for index, (subset, clip_id) in enumerate(zip(batch.subset, batch.clip_id)):
                if subset not in SUBSETS:
                    continue
                for t, flags in enumerate(schedules[clip_id]):
                    if not batch.labelled[index, t]:
                        continue
                    truth = batch.masks[index, t] > 0
                    if (sum(flags) > 0) != bool(truth.any()):  # the plan and the written clip disagree
                        raise SystemExit(f"{clip_id} second {t}: the plan has {sum(flags)} sounding objects, the "
                                         f"mask {int(truth.sum())} pixels; is {cfg.stamps.deb_dir} the package the set was built from?")
                    kind = f"{subset}: {sum(flags)} of {len(flags)} sounding"
                    for key in (kind, f"{subset}: all"):
                        meters[key].update(probs[index, t], truth, batch.visible[index, t] > 0)
    return {key: meters[key].compute() for key in sorted(meters)}


def render(result: dict) -> str:
    lines = [f"# {', '.join(SUBSETS)} test frames by how many objects sound ({result['model']}, one run)", "",
             "Frame-mean J (an empty truth scores 1 when nothing is marked). Pick rate and coverage: frames with a "
             "sounding and a silent object in view.", "",
             f"Sounding objects: the connected parts of the truth (touching objects count as one), {MIN_PIXELS} pixels or more; "
             f"missed: less than {MISSED} of its pixels marked.", "",
             "Objects voted J: every true object (a connected part of the visible-object mask) drawn whole where the "
             "model's mean sounding probability over it exceeds 0.5: the model's choice with perfect outlines.", "",
             "| frames | count | model J | every visible object J | objects voted J | mixed frames | pick rate | sounding marked | silent marked "
             "| sounding objects | median share marked | missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in result["kinds"].items():
        mixed = [f"{row[k]:.2f}" if row["mixed_frames"] else "-" for k in ("pick_rate", "sounding_covered", "silent_covered")]
        per_object = [f"{row[k]:.2f}" if row["objects"] else "-" for k in ("object_covered_median", "objects_missed")]
        lines.append(f"| {key} | {row['frames']} | {row['J']:.3f} | {row['union_J']:.3f} | {row['voted_J']:.3f} | {row['mixed_frames']} | "
                     + " | ".join(mixed) + f" | {row['objects']} | " + " | ".join(per_object) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, help="a saved model's folder (default: models/<dataset>)")
    parser.add_argument("--stem", default="mixed_frames", help="results file name: benchmarks/results/STEM.{json,md}")
    args = parser.parse_args()
    cfg = load_config(args.params)
    if cfg.data.dataset != "stamps":
        raise SystemExit(f"{args.params}: data.dataset is {cfg.data.dataset}; this benchmark reads the stamps set's plan")
    repo = Path(".").resolve()
    folder = (args.model or model_dir(cfg, repo)).resolve()
    label = str(folder.relative_to(repo)) if folder.is_relative_to(repo) else str(folder)
    result = {"benchmark": "mixed_frames", "model": label, "kinds": measure(cfg, repo, folder)}
    write_results(args.stem, result, render(result), "cpu", False)


if __name__ == "__main__":
    main()
