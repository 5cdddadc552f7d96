"""How much J a mask drawn at 1/s scale can reach at all: the ground truth itself, pooled and upsampled.

Each test frame's truth is average-pooled by s (the scale a mask head predicts at), upsampled
bilinearly back (as the model's logits are) and thresholded at 0.5; its J against the truth is
the most any model predicting at that scale can score. Per subset, frames with a sounding object
only, at a few frame sizes. Writes benchmarks/results/mask_resolution.{json,md}.

    python benchmarks/mask_resolution.py [--params params.yaml] [--split test]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avs.config import load_config
from avs.data.stages import shards_dir
from avs.data.stream import max_frames, shard_files
from avs.eval.evaluate import decoded_batches

RESULTS = Path(__file__).parent / "results"
SIZES = (128, 160, 224)
SCALES = (2, 4, 8)


def pooled_jaccard(truth: torch.Tensor, scale: int) -> float:
    """J of the truth (H, W bool) after pooling by `scale`, bilinear upsampling and a 0.5 threshold."""
    low = F.avg_pool2d(truth.float()[None, None], scale)
    redrawn = F.interpolate(low, size=truth.shape, mode="bilinear", align_corners=False)[0, 0] > 0.5
    return ((redrawn & truth).sum() / (redrawn | truth).sum()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    cfg = load_config(args.params)
    files = shard_files(shards_dir(cfg, Path(".")), args.split)
    scores: dict[tuple[int, str, int], list[float]] = defaultdict(list)
    area: dict[str, list[float]] = defaultdict(list)
    for size in SIZES:
        for batch in decoded_batches(files, size, max_frames(files), 8):
            for index, subset in enumerate(batch.subset):
                for labelled, mask in zip(batch.labelled[index], batch.masks[index]):
                    truth = mask > 0
                    if not labelled or not truth.any():
                        continue
                    if size == SIZES[0]:
                        area[subset].append(truth.float().mean().item())
                    for scale in SCALES:
                        scores[(size, subset, scale)].append(pooled_jaccard(truth, scale))
    subsets = sorted(area)
    result = {"benchmark": "mask_resolution", "split": args.split,
              "object_area": {s: round(float(np.mean(area[s])), 4) for s in subsets},
              "frames": {s: len(area[s]) for s in subsets},
              "J": {f"{size}px_1/{scale}_{subset}": round(float(np.mean(scores[(size, subset, scale)])), 3)
                    for size in SIZES for scale in SCALES for subset in subsets}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mask_resolution.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# The most J a mask drawn at 1/s scale can reach ({args.split} split, frames with a sounding object)", "",
             "The truth itself, average-pooled by s, upsampled bilinearly and thresholded at 0.5. Mean sounding area: "
             + ", ".join(f"{s} {100 * result['object_area'][s]:.1f} % of the frame ({result['frames'][s]} frames)" for s in subsets)
             + ".", "", "| frame size | scale | " + " | ".join(subsets) + " |", "|---|---|" + "---|" * len(subsets)]
    for size in SIZES:
        for scale in SCALES:
            lines.append(f"| {size} px | 1/{scale} | " + " | ".join(f"{result['J'][f'{size}px_1/{scale}_{s}']:.3f}" for s in subsets) + " |")
    (RESULTS / "mask_resolution.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
