"""One optimisation step and one validation pass: the training loop's arithmetic, free of Ray.

`avs.train.loop` runs these inside Ray Train; `benchmarks/gpu_epoch.py` runs them directly on a
GPU, so that what it times is the same step the `train` stage takes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn

from avs.config import Config
from avs.data.batch import ClipBatch
from avs.eval.audio_cache import AudioEmbeddingCache
from avs.eval.metrics import BinaryMeter
from avs.model import compute_losses
from avs.model.losses import relevance_gap
from avs.model.saved import foreground_probability
from avs.train.checkpoint import unwrap


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number."""


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor: linear warm-up, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def freeze_audio_encoder(model: nn.Module) -> AudioEmbeddingCache:
    """Fix the (unwrapped) model's audio encoder, weights and batch-norm statistics (`model.freeze_audio`).

    Call before DDP wraps the model and after every `model.train()` (see `set_training_mode`).
    Returns the cache of its embeddings, which stay the same while it is frozen.
    """
    encoder = unwrap(model).audio
    encoder.requires_grad_(False)
    encoder.eval()
    return AudioEmbeddingCache(encoder)


def set_training_mode(model: nn.Module, frozen_audio: bool) -> None:
    """`model.train()`, keeping a frozen audio encoder in eval mode (its batch-norm statistics fixed)."""
    model.train()
    if frozen_audio:
        unwrap(model).audio.eval()


def forward(model: nn.Module, batch: ClipBatch, audio_cache: AudioEmbeddingCache | None) -> dict:
    """The model's outputs for `batch`, its audio through `audio_cache` when there is one."""
    frames, waveform = batch.model_inputs()
    if audio_cache is None:
        return model(frames, waveform)
    return model(frames, audio_embeddings=audio_cache(waveform))


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW with the backbone at lr * backbone_lr_multiplier."""
    backbone = {id(p) for p in unwrap(model).visual.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if id(p) in backbone], "lr": cfg.train.lr * cfg.train.backbone_lr_multiplier},
            {"params": [p for p in params if id(p) not in backbone], "lr": cfg.train.lr},
        ],
        weight_decay=cfg.train.weight_decay,
    )


def train_step(
    model: nn.Module,
    batch: ClipBatch,
    optimizer: torch.optim.Optimizer,
    scheduler,
    cfg: Config,
    progress: float,
    use_bf16: bool,
    where: str,
    audio_cache: AudioEmbeddingCache | None = None,
    check_finite: bool = True,
) -> dict[str, torch.Tensor]:
    """Forward (bf16 autocast when `use_bf16`), losses, backward, clipping, optimizer and scheduler step.

    `batch` is on the model's device; `progress` is the epoch as a fraction (the KL annealing
    reads it); `where` names the step in the error raised when the loss is not finite;
    `audio_cache` gives a frozen audio encoder's embeddings. `check_finite=False` leaves the check
    of the loss, a host sync, to the caller (`LossMeter.raise_if_diverged`).
    Returns the loss terms (detached) and, with AMA on, `rp_gap` (`relevance_gap`: not a loss;
    NaN when the batch has no labelled frame with groups on and off the sounding objects).
    """
    device_type = batch.frames.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16):
        outputs = forward(model, batch, audio_cache)
        masks, labelled = batch.masks.long(), batch.labelled
        losses = compute_losses(outputs, masks, labelled, cfg.loss, progress)
    if check_finite and not torch.isfinite(losses["total"]):
        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        raise TrainingDiverged(
            f"{where}: the loss is not finite ({terms}) on clips {batch.clip_id}; "
            "lower train.lr or train.grad_clip, or check these clips"
        )
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if cfg.train.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    optimizer.step()
    scheduler.step()
    results = {name: value.detach() for name, value in losses.items()}
    if outputs["alignments"]:
        results["rp_gap"] = relevance_gap(outputs["alignments"], masks.flatten(0, 1), labelled.flatten())
    return results


class LossMeter:
    """Running means of the loss terms, kept on the device: reading them costs one host sync.

    A term a step lacks, or has as NaN (`rp_gap` without a labelled frame), is not averaged in;
    a non-finite `total` is counted, and `raise_if_diverged` reports it.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        self.diverged: torch.Tensor | None = None

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for name, value in losses.items():
            finite = torch.isfinite(value)
            self.sums[name] = self.sums.get(name, 0) + torch.where(finite, value.float(), 0.0)
            self.counts[name] = self.counts.get(name, 0) + finite.float()
        bad = (~torch.isfinite(losses["total"])).float()
        self.diverged = bad if self.diverged is None else self.diverged + bad

    def raise_if_diverged(self, where: str) -> None:
        """Raise `TrainingDiverged` if any step since the start had a non-finite loss (one sync)."""
        if self.diverged is not None and self.diverged.item():
            raise TrainingDiverged(
                f"{where}: the loss stopped being finite ({int(self.diverged.item())} steps); "
                "lower train.lr or train.grad_clip, or check the clips"
            )

    def means(self) -> dict[str, float]:
        names = list(self.sums)
        if not names:
            return {}
        sums, counts = torch.stack([self.sums[n] for n in names]), torch.stack([self.counts[n] for n in names])
        # one sync; a term that was never finite is left out, as it is of each step's mean
        return {n: s / c for n, s, c in zip(names, sums.tolist(), counts.tolist()) if c}


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: Iterable[ClipBatch],
    device: torch.device,
    use_bf16: bool,
    audio_cache: AudioEmbeddingCache | None = None,
) -> dict[str, float]:
    """J and F (AVSBench protocol) over this worker's share of the validation split, summed across workers."""
    model.eval()
    meters: dict[str, BinaryMeter] = defaultdict(BinaryMeter)
    for batch in batches:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = forward(model, batch, audio_cache)["logits"]
        probs = foreground_probability(logits)
        truth = batch.masks > 0
        for index, subset in enumerate(batch.subset):
            labelled = batch.labelled[index]
            for name in (subset, "all"):
                meters[name].update(probs[index][labelled], truth[index][labelled])
                if batch.has_visible[index]:  # the audio-blind reference: segment every visible object
                    meters[f"{name}:visible"].update(batch.visible[index][labelled].float(), truth[index][labelled])
    names = sorted({"all", *meters})
    state = torch.stack([meters[n].state() for n in names])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # every worker must take part with the same subsets: gather the names first
        gathered: list[list[str]] = [None] * torch.distributed.get_world_size()  # type: ignore[list-item]
        torch.distributed.all_gather_object(gathered, names)
        names = sorted({n for worker in gathered for n in worker})
        state = torch.stack([meters[n].state() for n in names])
        state = state.to(device)  # NCCL reduces device tensors only
        torch.distributed.all_reduce(state)
        state = state.cpu()
    results = {}
    for name, row in zip(names, state):
        meter = BinaryMeter()
        meter.merge(row)
        scores = meter.compute()
        subset, _, reference = name.partition(":")
        prefix = ("val" if subset == "all" else f"val_{subset}") + ("_visible_union" if reference else "")
        results[f"{prefix}/J"] = scores["J"]
        if not reference:
            results[f"{prefix}/F"] = scores["F"]
    return results
