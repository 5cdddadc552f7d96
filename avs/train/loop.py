"""The per-worker training loop that Ray Train runs on every worker (DDP through `prepare_model`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import ray
import ray.train
import ray.train.torch
import torch
from torch import nn

from avs.config import Config, config_from_dict
from avs.data.collate import iter_clip_batches
from avs.model import build_model
from avs.track.runs import EpochLogger
from avs.train.checkpoint import load_training_state, load_weights, read_state, write_checkpoint
from avs.train.step import (
    LossMeter,
    freeze_audio_encoder,
    make_optimizer,
    set_training_mode,
    train_step,
    validate,
    warmup_cosine,
)

T = TypeVar("T")
LOG_EVERY = 50  # steps between checks that the loss is still finite (each a host sync)
# Through logging, not print: Ray Train patches a worker's print into its logger and also echoes
# it to stdout once anything has wrapped sys.stdout, so a printed line reached the log twice.
log = logging.getLogger(__name__)


class WaitClock:
    """Seconds spent waiting for the next item of an iterable: how long training starved for data."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, items: Iterable[T]) -> Iterator[T]:
        iterator = iter(items)
        while True:
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - started
            yield item


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Train for `train.epochs`, validating and checkpointing after every epoch.

    `loop_config` holds the resolved params (`config`), the weight files shared through Ray's
    object store (`weights`), `threads` (0: the node's cores over its workers), `steps_per_epoch`, the
    MLflow `run_id`/`tracking_uri` that rank 0 logs to and `progress` (rank 0 shows a bar of the
    epoch's steps). On a restart (a worker died, or the stage was interrupted and run again)
    training resumes after the last reported checkpoint.
    """
    cfg: Config = config_from_dict(loop_config["config"])
    context = ray.train.get_context()
    # this node's cores shared among its workers, unless train.threads_per_worker says otherwise
    torch.set_num_threads(loop_config["threads"] or max(1, (os.cpu_count() or 1) // context.get_local_world_size()))
    torch.manual_seed(cfg.train.seed)
    rank = context.get_world_rank()
    use_bf16 = cfg.train.use_gpu and torch.cuda.is_available()

    with tempfile.TemporaryDirectory() as weights_folder:  # the driver's weight files, from Ray's object store
        network = build_model(_with_weights(cfg, loop_config.get("weights", {}), Path(weights_folder)))
    # a frozen encoder's embeddings are remembered: every epoch and validation pass repeat its seconds
    audio_cache = freeze_audio_encoder(network) if cfg.model.freeze_audio else None
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(network)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = loop_config["steps_per_epoch"]
    total_steps = steps_per_epoch * cfg.train.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(round(cfg.train.warmup_epochs * steps_per_epoch), total_steps)
    )
    start_epoch = 0
    # Every epoch's metrics travel in the checkpoint: Ray Train keeps only the metrics of the
    # checkpoints it retains (num_to_keep), and a resumed run must not lose the earlier epochs.
    history: list[dict[str, float]] = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            load_weights(model, folder)
            load_training_state(folder, optimizer, scheduler)
            saved = read_state(folder)
            start_epoch, history = saved["epoch"] + 1, saved["history"]
        if rank == 0:
            log.info(f"avs train: resuming after epoch {start_epoch - 1} from {checkpoint.path}")
    tracker = EpochLogger(loop_config["tracking_uri"], loop_config["run_id"]) if rank == 0 else None
    if tracker is not None:
        tracker.tag("avs.precision", "bf16 (GPU)" if use_bf16 else "fp32")

    train_data = ray.train.get_dataset_shard("train")
    val_data = ray.train.get_dataset_shard("val")
    for epoch in range(start_epoch, cfg.train.epochs):
        started = time.perf_counter()
        set_training_mode(model, cfg.model.freeze_audio)
        meter = LossMeter()  # on the device: the loss terms are read once per logging interval
        steps = clips = 0
        data_wait = WaitClock()
        bar = (
            _step_bar(f"train epoch {epoch} ({epoch + 1}/{cfg.train.epochs})", steps_per_epoch)
            if rank == 0 and loop_config.get("progress")
            else None
        )
        for step, batch in enumerate(
            data_wait.timed(
                iter_clip_batches(
                    train_data,
                    batch_size=cfg.train.worker_batch_size,
                    shuffle_buffer=cfg.train.shuffle_buffer if cfg.train.shuffle else 0,
                    seed=(cfg.train.seed * 1000 + epoch) * 1000 + rank,  # another draw every epoch and worker
                )
            )
        ):
            if batch.frames.shape[0] * batch.frames.shape[1] < 2:
                # A last batch of a single image (VPO: T = 1): the similarity's batch norm needs two
                # samples. Every worker gets the same number of clips, so all of them skip it.
                continue
            losses = train_step(
                model,
                batch.to(device),
                optimizer,
                scheduler,
                cfg,
                epoch + step / steps_per_epoch,
                use_bf16,
                where=f"epoch {epoch} step {step}",
                audio_cache=audio_cache,
                check_finite=False,
            )
            meter.add(losses)
            steps += 1
            if steps % LOG_EVERY == 0:
                meter.raise_if_diverged(f"epoch {epoch}, steps {steps - LOG_EVERY}-{steps - 1}")
            clips += len(batch.clip_id)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.total = steps  # steps_per_epoch assumed an even split of the clips between workers
            bar.close()
        train_seconds = time.perf_counter() - started  # the epoch's training steps, data waits included
        meter.raise_if_diverged(f"epoch {epoch}")
        metrics = {f"train/{name}": value for name, value in meter.means().items()}
        val_batches = iter_clip_batches(val_data, batch_size=cfg.train.worker_batch_size)
        metrics.update(validate(model, val_batches, device, use_bf16, audio_cache))
        metrics.update(_worker_agreement(model, context.get_world_size()))
        metrics.update(
            {
                "epoch": epoch,
                "train/clips_per_s": clips * context.get_world_size() / train_seconds,
                # this worker's share of the epoch's training time spent waiting for the next batch
                "train/data_wait_share": data_wait.seconds / train_seconds,
                "lr": scheduler.get_last_lr()[-1],
            }
        )
        history.append(metrics)
        if rank == 0:
            log.info(epoch_summary(metrics, cfg.train.epochs, time.perf_counter() - started))
        reported = None
        if rank == 0:
            state = {
                "epoch": epoch,
                "metrics": metrics,
                "history": history,
                "config": loop_config["config"],
                "run_id": loop_config["run_id"],
            }
            folder = write_checkpoint(Path(tempfile.mkdtemp()) / "checkpoint", model, optimizer, scheduler, state)
            reported = ray.train.Checkpoint.from_directory(str(folder))
            tracker.log(metrics, epoch)
        # uploaded in the background while the next epoch trains; the local copy is deleted after
        ray.train.report(
            metrics,
            checkpoint=reported,
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
            delete_local_checkpoint_after_upload=True,
        )


def _with_weights(cfg: Config, weights: dict[str, tuple[str, Any]], folder: Path) -> Config:
    """`cfg` with each shared weight file (`model.<key>` -> (name, object ref)) written to `folder`."""
    paths = {}
    for key, (name, ref) in weights.items():
        paths[key] = str(folder / name)
        Path(paths[key]).write_bytes(ray.get(ref))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **paths)) if paths else cfg


def epoch_summary(metrics: dict[str, float], epochs: int, seconds: float) -> str:
    """One readable line per epoch for the stage's log (every metric is in MLflow and train_history.csv)."""
    subsets = ", ".join(
        f"{k[len('val_') : -len('/J')]} {v:.3f}"
        for k, v in sorted(metrics.items())
        if k.startswith("val_") and k.endswith("/J") and "visible_union" not in k
    )
    epoch = int(metrics["epoch"])  # 0-based, as in train_history.csv and MLflow's steps
    ama = "".join(
        f", {name} {metrics[f'train/{name}']:.3g}" for name in ("cst", "rp_gap") if f"train/{name}" in metrics
    )
    return (
        f"avs train: epoch {epoch} ({epoch + 1}/{epochs}): loss {metrics.get('train/total', math.nan):.4g}{ama}, "
        f"val J {metrics['val/J']:.3f}"
        + (f" ({subsets})" if subsets else "")
        + f", {metrics['train/clips_per_s']:.2f} clips/s, {seconds:.0f} s"
    )


def _step_bar(description: str, total: int):
    """A progress bar of the epoch's steps that Ray draws in the driver's terminal (tqdm_ray)."""
    from ray.experimental import tqdm_ray

    return tqdm_ray.tqdm(desc=description, total=total, unit="step")


def _worker_agreement(model: nn.Module, world_size: int) -> dict[str, float]:
    """Whether every worker holds the same weights (DDP keeps them equal), and on how many nodes they run."""
    checksum = sum(p.detach().double().sum().item() for p in model.parameters())
    entries = [(checksum, ray.get_runtime_context().get_node_id())]
    if world_size > 1:
        entries = [None] * world_size  # type: ignore[list-item]
        torch.distributed.all_gather_object(entries, (checksum, ray.get_runtime_context().get_node_id()))
    return {
        "workers/in_sync": float(len({c for c, _ in entries}) == 1),
        "workers/nodes": float(len({n for _, n in entries})),
    }
