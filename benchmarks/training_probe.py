"""Short training probes: which settings learn most in a fixed number of steps on this machine?

A full `dvc repro` trains for about 12 minutes on 2 CPU cores, too long to compare many settings.
This script trains in-process (no Ray) for `--steps` steps on random batches of the train shards
(the same decoding, augmentation, optimiser, schedule and losses as `avs train`), then scores J on
the validation split, clean and with the audio of the next clip in the batch (`swap`: how much
the model uses what it hears), and the pick rate on validation and on the training clips. Each
`--set KEY=VALUE` (repeatable) overrides params.yaml. One line per run is appended to
benchmarks/results/training_probe.jsonl.

    python benchmarks/training_probe.py --tag decoder128 --set model.decoder_dim=128 [--steps 280]

280 steps were half of the default run's 572 when the probes below were made (8 epochs of 286
clips at batch 4; 10 epochs, 715 steps, since commit e4fd8aa); settings that win here are then
confirmed by a full `dvc repro`. Needs the shards and the backbone weights
(`dvc repro preprocess weights`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from tqdm import tqdm

from avs.config import load_config
from avs.data.stages import shards_dir
from avs.data.stream import ClipBatch, DecodeClips, max_frames, shard_files
from avs.eval.attribution import SoundingPickMeter
from avs.eval.evaluate import decoded_batches
from avs.eval.metrics import BinaryMeter
from avs.model import build_model, compute_losses
from avs.model.saved import foreground_probability
from avs.train.step import make_optimizer, warmup_cosine

RESULTS = Path(__file__).parent / "results" / "training_probe.jsonl"


def train(cfg, steps: int, repo: Path) -> tuple[nn.Module, float]:
    """`steps` optimiser steps on random train batches, the learning rate schedule scaled to them."""
    files = shard_files(shards_dir(cfg, repo), "train")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    decode = DecodeClips(image_size=cfg.train.image_size, num_frames=max_frames(files), augment=cfg.train.augment)
    model = build_model(cfg)
    optimizer = make_optimizer(model, cfg)
    warmup = round(cfg.train.warmup_epochs / cfg.train.epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, steps))
    order: list[int] = []
    started = time.perf_counter()
    for step in tqdm(range(steps), desc="train", unit="step"):
        if len(order) < cfg.train.batch_size:  # a new pass over the clips, in a new order
            order = list(np.random.default_rng(step).permutation(len(table)))
        rows = [order.pop() for _ in range(cfg.train.batch_size)]
        batch = ClipBatch.from_numpy(decode(table.take(rows)))
        model.train()
        outputs = model(*batch.model_inputs())
        losses = compute_losses(outputs, batch.masks.long(), batch.labelled, cfg.loss, step / steps * cfg.train.epochs)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
    return model, time.perf_counter() - started


@torch.inference_mode()
def score(model: nn.Module, cfg, repo: Path, split: str = "val", swap: bool = True) -> dict[str, float]:
    """J per subset of `split`, with each clip's own audio and (`swap`) with its neighbour's, and
    the clean pick rate (`pick_<subset>`: how often the sounding object gets more probability
    than a silent one in view; 0.5 is chance)."""
    model.eval()
    files = shard_files(shards_dir(cfg, repo), split)
    meters: dict[str, BinaryMeter] = defaultdict(BinaryMeter)
    picks: dict[str, SoundingPickMeter] = defaultdict(SoundingPickMeter)
    for batch in decoded_batches(files, cfg.train.image_size, max_frames(files), 4):
        conditions = [("clean", batch.audio)] + ([("swap", batch.audio.roll(1, 0))] if swap else [])
        for condition, audio in conditions:
            probs = foreground_probability(model(batch.frames.float() / 255, audio)["logits"])
            for i, subset in enumerate(batch.subset):
                keep = batch.labelled[i]
                for name in (subset, "all"):
                    meters[f"{condition}_{name}"].update(probs[i][keep], batch.masks[i][keep] > 0)
                    if condition == "clean" and batch.has_visible[i]:
                        picks[name].update(probs[i][keep], batch.masks[i][keep] > 0, batch.visible[i][keep] > 0)
    scores = {name: round(meter.compute()["J"], 3) for name, meter in sorted(meters.items())}
    scores.update({f"pick_{name}": round(meter.compute()["pick_rate"], 3) for name, meter in sorted(picks.items()) if meter.frames})
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="a name for this run in the results file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    parser.add_argument("--steps", type=int, default=280)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.manual_seed(0)
    repo = Path(args.params).resolve().parent
    cfg = load_config(args.params, args.set)
    model, seconds = train(cfg, args.steps, repo)
    result = {"tag": args.tag, "set": args.set, "steps": args.steps, "train_s": round(seconds), **score(model, cfg, repo)}
    # the pick rate on the (unaugmented) training clips: has the model fit the binding at all?
    result.update({f"train_{k}": v for k, v in score(model, cfg, repo, "train", swap=False).items() if k.startswith("pick_")})
    print(json.dumps(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
