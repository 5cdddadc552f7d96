"""J of the trained model with its masks guided-filtered by the frame, over a grid of windows and eps.

The model runs once per split at the `evaluate` stage's size and mirror averaging
(`evaluate.image_size`, `evaluate.flip`); its final logits then go through
`avs.eval.inference.guided_logits` for each setting, scored as the `evaluate` stage scores them
(AVSBench J, per subset). The setting is chosen on the validation split; the test split shows
whether the choice carries over. Also times the filter against the model's forward pass.
Writes benchmarks/results/guided_filter.{json,md}.

    python benchmarks/guided_filter.py [--params params.yaml] [--splits val test]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from avs.config import load_config
from avs.data.stages import shards_dir
from avs.data.stream import max_frames, shard_files
from avs.eval.evaluate import decoded_batches
from avs.eval.inference import guided_logits, inference_size, segment
from avs.eval.metrics import BinaryMeter
from avs.model.saved import foreground_probability, load_model, model_dir

RESULTS = Path(__file__).parent / "results"
KERNELS = (9, 15, 21, 25, 33)
EPS = (3e-5, 1e-4, 3e-4, 1e-3)


def model_outputs(model, cfg, split: str) -> tuple[list[dict], float]:
    """Per batch: frames (float, model size), logits, masks, labelled, subsets; and seconds per frame."""
    files = shard_files(shards_dir(cfg, Path(".")), split)
    size = inference_size(cfg)
    batches, seconds, frames = [], 0.0, 0
    with torch.inference_mode():
        for batch in tqdm(decoded_batches(files, size, max_frames(files), cfg.evaluate.batch_size), desc=f"model on {split}"):
            x = batch.frames.float() / 255
            start = time.perf_counter()
            logits = segment(model, x, batch.audio, size=size, flip=cfg.evaluate.flip)["logits"]
            seconds += time.perf_counter() - start
            frames += x.shape[0] * x.shape[1]
            batches.append({"frames": x, "logits": logits, "masks": batch.masks, "labelled": batch.labelled, "subset": batch.subset})
    return batches, seconds / frames


def jaccard(batches: list[dict], kernel: int, eps: float) -> tuple[dict[str, float], float]:
    """J per subset (and "all") with the filter (kernel 0: none); and the filter's seconds per frame."""
    meters: dict[str, BinaryMeter] = {}
    seconds, frames = 0.0, 0
    for b in batches:
        start = time.perf_counter()
        logits = guided_logits((b["logits"],), b["frames"], kernel, eps)[0] if kernel else b["logits"]
        seconds += time.perf_counter() - start
        frames += b["frames"].shape[0] * b["frames"].shape[1]
        probability = foreground_probability(logits)
        for i, subset in enumerate(b["subset"]):
            keep = b["labelled"][i]
            for name in (subset, "all"):
                meters.setdefault(name, BinaryMeter()).update(probability[i][keep], b["masks"][i][keep] > 0)
    return {name: round(m.compute()["J"], 4) for name, m in sorted(meters.items())}, seconds / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    args = parser.parse_args()
    cfg = load_config(args.params)
    model, model_cfg = load_model(model_dir(cfg, Path(".")))
    model_cfg = replace(model_cfg, evaluate=cfg.evaluate)  # the current test-time settings
    result = {"benchmark": "guided_filter", "image_size": inference_size(model_cfg), "flip": cfg.evaluate.flip,
              "chosen": {"kernel": cfg.evaluate.guided_kernel, "eps": cfg.evaluate.guided_eps}, "splits": {}}
    for split in args.splits:
        batches, model_seconds = model_outputs(model, model_cfg, split)
        rows = []
        for kernel, eps in [(0, 0.0)] + [(k, e) for k in KERNELS for e in EPS]:
            scores, filter_seconds = jaccard(batches, kernel, eps)
            rows.append({"kernel": kernel, "eps": eps, "J": scores, "filter_ms_per_frame": round(filter_seconds * 1000, 2)})
        result["splits"][split] = {"model_ms_per_frame": round(model_seconds * 1000, 1), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guided_filter.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "guided_filter.md").write_text(to_markdown(result))
    print(to_markdown(result))


def to_markdown(result: dict) -> str:
    chosen = result["chosen"]
    lines = [f"# Guided filter of the test-time masks ({result['image_size']} px"
             f"{', mirror-averaged' if result['flip'] else ''})", "",
             "`python benchmarks/guided_filter.py`: the trained default model's final logits, filtered with the",
             "frame as guide (`avs.eval.inference.guided_logits`, kornia's `guided_blur`), AVSBench J per subset.",
             f"Chosen on val: window {chosen['kernel']}, eps {chosen['eps']:g} (marked *); kernel 0 = no filter.", ""]
    for split, data in result["splits"].items():
        subsets = list(data["rows"][0]["J"])
        lines += [f"## {split} (model forward {data['model_ms_per_frame']} ms per frame, CPU)", "",
                  "| window | eps | " + " | ".join(f"J {s}" for s in subsets) + " | filter ms / frame |",
                  "|---|---|" + "---|" * len(subsets) + "---|"]
        for row in data["rows"]:
            mark = " *" if (row["kernel"], row["eps"]) == (chosen["kernel"], chosen["eps"]) else ""
            lines.append(f"| {row['kernel']}{mark} | {row['eps']:g} | " + " | ".join(f"{row['J'][s]:.3f}" for s in subsets)
                         + f" | {row['filter_ms_per_frame']} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
