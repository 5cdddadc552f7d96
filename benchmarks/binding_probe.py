"""Can frozen features tell which visible object a sound belongs to? A bilinear probe.

For every frame of the stamps shards with a sounding and a silent object in view, the frozen
ImageNet backbone's features of one stage are averaged over the sounding object's pixels and over
the silent ones' (from the ground truth and `visible_masks`), and the frozen aisfx embedding of
the frame's second of audio is taken. A bilinear score s(v, a) = <W_v v, W_a a> is trained on the
training frames to rank the sounding region above the silent one (logistic loss on the
difference, AdamW, batches of 20 frames, a few epochs as in a CPU training run). The pick rate is
the share of frames where s(sounding) > s(silent): 0.5 is chance, as in `avs/eval/attribution.py`.

This asks whether the data and the pretrained features carry the binding at all, with the
regions given; the model must find them too. Results go to benchmarks/results/binding_probe.md.

    python benchmarks/binding_probe.py [--image-size 128] [--epochs 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avs.config import load_config
from avs.data.stages import shards_dir
from avs.data.stream import max_frames, shard_files
from avs.eval.attribution import both_in_view
from avs.eval.evaluate import decoded_batches
from avs.model.audio import build_audio_encoder
from avs.model.encoders import build_visual_encoder

RESULTS = Path(__file__).parent / "results" / "binding_probe.md"


@torch.inference_mode()
def region_features(cfg, repo: Path, split: str, image_size: int) -> dict:
    """Per qualifying frame: every stage's mean feature over the sounding and the silent pixels, the audio."""
    visual = build_visual_encoder(cfg.model.backbone, repo / cfg.model.backbone_weights).eval()
    audio_encoder = build_audio_encoder(cfg.model.audio_encoder, cfg.model.audio_weights, frozen=True).eval()
    files = shard_files(shards_dir(cfg, repo), split)
    rows: dict[str, list] = {"sounding": [], "silent": [], "audio": [], "subset": []}
    for batch in decoded_batches(files, image_size, max_frames(files), 8):
        x = visual.normalise(batch.frames.flatten(0, 1).float() / 255)
        stages = []
        for stage in visual.stages:
            x = stage(x)
            stages.append(x)
        audio = audio_encoder(batch.audio.flatten(0, 1))  # (N, A)
        sounding = batch.masks.flatten(0, 1) > 0
        silent = (batch.visible.flatten(0, 1) > 0) & ~sounding
        frames = batch.frames.shape[1]
        for n in range(len(audio)):
            clip = n // frames
            if not (batch.has_visible[clip] and batch.labelled[clip, n % frames]):
                continue
            if not both_in_view(sounding[n], silent[n]):
                continue
            for key, mask in (("sounding", sounding[n]), ("silent", silent[n])):
                pooled = []
                for feature in stages:
                    share = F.adaptive_avg_pool2d(mask[None, None].float(), feature.shape[-2:])[0, 0]
                    pooled.append((feature[n] * share).sum((1, 2)) / share.sum().clamp(min=1e-6))
                rows[key].append(pooled)
            rows["audio"].append(audio[n])
            rows["subset"].append(batch.subset[clip])
    return rows


def stage_tensors(rows: dict, stage: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    on = torch.stack([r[stage] for r in rows["sounding"]])
    off = torch.stack([r[stage] for r in rows["silent"]])
    return on, off, torch.stack(rows["audio"])


class BilinearScore(nn.Module):
    """<W_v standardise(v), W_a standardise(a)>, standardised with the training frames' statistics."""

    def __init__(self, visual: torch.Tensor, audio: torch.Tensor, dim: int = 64):
        super().__init__()
        self.register_buffer("v_mean", visual.mean(0))
        self.register_buffer("v_std", visual.std(0) + 1e-5)
        self.register_buffer("a_mean", audio.mean(0))
        self.register_buffer("a_std", audio.std(0) + 1e-5)
        self.visual = nn.Linear(visual.shape[1], dim)
        self.audio = nn.Linear(audio.shape[1], dim)

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return (self.visual((v - self.v_mean) / self.v_std) * self.audio((a - self.a_mean) / self.a_std)).sum(1)


def pick_rates(score: BilinearScore, on, off, audio, subsets: list[str]) -> dict[str, float]:
    with torch.no_grad():
        picked = (score(on, audio) > score(off, audio)).float()
    return {s: picked[[i for i, x in enumerate(subsets) if x == s]].mean().item() for s in sorted(set(subsets))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128, help="frames resized to this square (training uses 128)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    repo = Path(args.params).resolve().parent
    cfg = load_config(args.params)
    if cfg.model.backbone_weights is None:
        parser.error(f"{args.params}: model.backbone_weights is null; the probe needs pretrained backbone weights")
    started = time.perf_counter()
    data = {split: region_features(cfg, repo, split, args.image_size) for split in ("train", "val", "test")}
    lines = [
        f"# Bilinear binding probe ({cfg.model.backbone} ImageNet, frozen; {cfg.model.audio_encoder} frozen)",
        "",
        f"`python benchmarks/binding_probe.py --image-size {args.image_size} --epochs {args.epochs}`: frames at "
        f"{args.image_size} px; qualifying frames train / val / test: "
        + " / ".join(str(len(data[s]["audio"])) for s in ("train", "val", "test")) + ". Pick rate (0.5 = chance).",
        "",
        "| stage (stride) | train hard | train ms3 | val hard | val ms3 | test hard | test ms3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in range(4):
        torch.manual_seed(0)
        on, off, audio = stage_tensors(data["train"], stage)
        score = BilinearScore(torch.cat([on, off]), audio)
        optimizer = torch.optim.AdamW(score.parameters(), lr=1e-3, weight_decay=0.05)
        for _ in range(args.epochs):
            for index in torch.randperm(len(audio)).split(20):
                loss = F.softplus(score(off[index], audio[index]) - score(on[index], audio[index])).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        cells = []
        for split in ("train", "val", "test"):
            rates = pick_rates(score, *stage_tensors(data[split], stage), data[split]["subset"])
            cells += [f"{rates.get('hard', float('nan')):.3f}", f"{rates.get('ms3', float('nan')):.3f}"]
        lines.append(f"| {stage + 1} ({4 * 2 ** stage}) | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", f"{time.perf_counter() - started:.0f} s on this machine.", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
