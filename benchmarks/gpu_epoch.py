"""A GPU epoch of the `train` stage's step in bf16 and fp32, what it takes to feed it, and whether bf16 learns.

The GPU machines lent to this project have torch but no Ray, so this runs the step of
`avs.train.step` (the code the Ray Train loop runs on every worker) directly on one GPU. Clips are
decoded and augmented by `DecodeClips`, the Ray Data pipeline's own map function, before each
timed epoch: the epoch times the GPU's work alone, and the decode rate on the machine's cores says
what Ray Data would have to deliver to keep the GPU busy.

1. Decode: `DecodeClips` with the training augmentation over the shard rows in memory, in one
   process of one thread, then in a pool of one process per core.
2. Epoch: for each precision and batch size, a fresh model, a warm-up epoch, then a timed epoch
   of `--epoch-clips` clips (default: the train split's size in the shards' manifest), drawn from
   the given shard files in fresh augmentations; clips/s, seconds and peak GPU memory.
3. DDP: the bf16 epoch again with the model wrapped in DistributedDataParallel in a one-process
   NCCL group (gloo on a CPU), and a validation pass through the group's all-reduce.
4. Learning: `--learn-epochs` epochs from the configured (pretrained) weights in bf16 and in fp32
   on the given training shards, validated on `--val` shards after every epoch.

Writes <results>/gpu_epoch.{json,md} after every section, so a run cut short keeps what it measured.

    python benchmarks/gpu_epoch.py [--train FILE ...] [--val FILE ...] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from avs.config import Config, load_config
from avs.data.batch import ClipBatch
from avs.data.preprocess import read_manifest
from avs.data.stream import DecodeClips, max_frames, shard_files
from avs.eval.audio_cache import AudioEmbeddingCache
from avs.model import build_model
from avs.train.step import freeze_audio_encoder, make_optimizer, set_training_mode, train_step, validate, warmup_cosine

RESULTS = Path(__file__).parent / "results"


def read_rows(files: list[str], with_visible: bool) -> pa.Table:
    """The shard rows, undecoded; without the visible-object masks unless asked (training reads none)."""
    table = pa.concat_tables(pq.read_table(f) for f in files)
    return table if with_visible else table.drop_columns(["visible_masks"])


def decode(rows: pa.Table, cfg: Config, num_frames: int, train: bool) -> dict[str, np.ndarray]:
    """Decoded columns of every row: augmented as for training (`train`), else resized as for validation."""
    return DecodeClips(
        image_size=cfg.train.image_size, num_frames=num_frames, augment=cfg.train.augment if train else None
    )(rows)


def batches_of(columns: dict[str, np.ndarray], batch_size: int) -> list[ClipBatch]:
    count = len(columns["clip_id"])
    return [
        ClipBatch.from_numpy({k: v[i : i + batch_size] for k, v in columns.items()})
        for i in range(0, count, batch_size)
    ]


def epoch_batches(
    rows: pa.Table, cfg: Config, num_frames: int, clips: int, batch_size: int, rng: np.random.Generator
) -> list[ClipBatch]:
    """`clips` freshly augmented clips drawn from `rows` in shuffled passes, in batches."""
    parts, drawn = [], 0
    while drawn < clips:
        order = rng.permutation(rows.num_rows)[: clips - drawn]
        parts.append(decode(rows.take(order), cfg, num_frames, train=True))
        drawn += len(order)
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return batches_of(columns, batch_size)


# 1. decode -----------------------------------------------------------------------------------

_WORKER_ROWS: tuple[pa.Table, Config, int] | None = None


def _hold_rows(rows: pa.Table, cfg: Config, num_frames: int) -> None:
    """Pool initializer: each process receives the rows once (a pickled slice can carry its whole table)."""
    global _WORKER_ROWS
    torch.set_num_threads(1)
    _WORKER_ROWS = (rows, cfg, num_frames)


def _decode_chunk(start: int) -> int:
    rows, cfg, num_frames = _WORKER_ROWS
    return len(decode(rows.slice(start, 4), cfg, num_frames, train=True)["clip_id"])


def decode_rates(rows: pa.Table, cfg: Config, num_frames: int) -> dict[str, float]:
    """Clips/s of the training decode: one process of one thread, and one process per core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    decode(rows.slice(0, 4), cfg, num_frames, train=True)  # warm-up
    start = time.perf_counter()
    decode(rows, cfg, num_frames, train=True)
    single = rows.num_rows / (time.perf_counter() - start)
    torch.set_num_threads(threads)

    cores = os.cpu_count() or 1
    chunks = list(range(0, rows.num_rows, 4))
    work = chunks * max(1, -(-32 * cores // len(chunks)))  # at least 32 chunks a core
    with multiprocessing.get_context("spawn").Pool(
        cores, initializer=_hold_rows, initargs=(rows, cfg, num_frames)
    ) as pool:
        pool.map(_decode_chunk, chunks[:1] * cores, chunksize=1)  # start-up and imports, untimed
        start = time.perf_counter()
        decoded = sum(pool.map(_decode_chunk, work, chunksize=1))
        pooled = decoded / (time.perf_counter() - start)
        # close and join before the `with` ends: leaving it to its terminate() made the one-process
        # DDP section that follows hang, waiting forever, in about one CPU run in ten (2026-12-04)
        pool.close()
        pool.join()
    return {"one_core_clips_per_s": single, "all_cores_clips_per_s": pooled, "cores": cores}


# 2. and 3. epochs ----------------------------------------------------------------------------


def build(cfg: Config, device: torch.device, steps: int, ddp: bool = False):
    torch.manual_seed(cfg.train.seed)
    network = build_model(cfg).to(device)
    cache = freeze_audio_encoder(network) if cfg.model.freeze_audio else None  # as the training loop does
    model = network
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(max(1, steps // 10), steps))
    return model, optimizer, scheduler, cache


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_epoch(
    model,
    optimizer,
    scheduler,
    cfg: Config,
    batches: list[ClipBatch],
    device: torch.device,
    use_bf16: bool,
    epoch: int,
    cache: AudioEmbeddingCache | None,
) -> dict[str, float]:
    """One epoch of training steps as the loop takes them (loss terms read back every step)."""
    set_training_mode(model, cache is not None)
    sums: dict[str, float] = {}
    sync(device)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        progress, where = epoch + step / len(batches), f"epoch {epoch} step {step}"
        losses = train_step(model, batch.to(device), optimizer, scheduler, cfg, progress, use_bf16, where, cache)
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.item()
    sync(device)
    seconds = time.perf_counter() - start
    clips = sum(len(b.clip_id) for b in batches)
    return {"seconds": seconds, "clips": clips, "clips_per_s": clips / seconds, "loss": sums["total"] / len(batches)}


def timed_epoch(
    cfg: Config,
    rows: pa.Table,
    num_frames: int,
    clips: int,
    batch_size: int,
    device: torch.device,
    use_bf16: bool,
    ddp: bool = False,
) -> tuple[dict[str, float], torch.nn.Module, AudioEmbeddingCache | None]:
    """A warm-up epoch, then a timed one, of a fresh model: the timed epoch's figures (with its peak
    device memory) and the trained model."""
    rng = np.random.default_rng(cfg.train.seed)
    steps = -(-clips // batch_size)
    model, optimizer, scheduler, cache = build(cfg, device, 2 * steps, ddp)
    run_epoch(
        model,
        optimizer,
        scheduler,
        cfg,
        epoch_batches(rows, cfg, num_frames, clips, batch_size, rng),
        device,
        use_bf16,
        0,
        cache,
    )
    batches = epoch_batches(rows, cfg, num_frames, clips, batch_size, rng)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = run_epoch(model, optimizer, scheduler, cfg, batches, device, use_bf16, 1, cache)
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    result["batch_size"] = batch_size
    result["precision"] = "bf16" if use_bf16 else "fp32"
    return result, model, cache


def ddp_epoch(
    cfg: Config, rows: pa.Table, val: list[ClipBatch], num_frames: int, clips: int, device: torch.device
) -> dict[str, float]:
    """The bf16 epoch in a one-process DDP group (NCCL on a GPU), then validation through its all-reduce."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        result, model, cache = timed_epoch(
            cfg, rows, num_frames, clips, cfg.train.batch_size, device, device.type == "cuda", ddp=True
        )
        scores = validate(model, val, device, device.type == "cuda", cache)
        result["val_J"] = scores["val/J"]
        result["backend"] = backend
        del model  # its DDP reducer holds the group: it must not outlive it (below)
        return result
    finally:
        # torch 2.11 with gloo: the group's destructor joins its worker thread while this thread holds
        # the GIL, and the worker may still be freeing a finished all-reduce's tensors, for which it
        # waits on the GIL: a deadlock (py-spy on a hung CPU run: ~ProcessGroupGloo in std::thread::join
        # under the reducer's dealloc; 3 of 19 runs). So the reducer goes first (above), and a barrier
        # and a short sleep, both without the GIL, let the worker finish before the group is destroyed.
        if backend == "gloo":
            torch.distributed.barrier()
            time.sleep(0.2)
        torch.distributed.destroy_process_group()


# 4. learning ---------------------------------------------------------------------------------


def learning_curve(
    cfg: Config,
    rows: pa.Table,
    val: list[ClipBatch],
    num_frames: int,
    epochs: int,
    device: torch.device,
    use_bf16: bool,
) -> list[dict[str, float]]:
    """Train `epochs` epochs over `rows` from the configured weights; the loss and validation J of each."""
    rng = np.random.default_rng(cfg.train.seed)
    steps = -(-rows.num_rows // cfg.train.batch_size)
    model, optimizer, scheduler, cache = build(cfg, device, epochs * steps)
    history = []
    for epoch in range(epochs):
        batches = epoch_batches(rows, cfg, num_frames, rows.num_rows, cfg.train.batch_size, rng)
        trained = run_epoch(model, optimizer, scheduler, cfg, batches, device, use_bf16, epoch, cache)
        scores = validate(model, val, device, use_bf16, cache)
        history.append(
            {
                "epoch": epoch,
                "loss": trained["loss"],
                "seconds": trained["seconds"],
                "val_J": scores["val/J"],
                "val_F": scores["val/F"],
                "val_visible_union_J": scores.get("val_visible_union/J", float("nan")),
            }
        )
        print(
            f"  {'bf16' if use_bf16 else 'fp32'} epoch {epoch}: loss {trained['loss']:.3f}, "
            f"val J {scores['val/J']:.3f}",
            flush=True,
        )
    return history


# report --------------------------------------------------------------------------------------


def render(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"# A GPU epoch of the training step ({env['device']})",
        "",
        f"torch {env['torch']}, {env['cpus']} CPUs; the `train` stage's config (image {result['image_size']} px, "
        f"{result['num_frames']} frames a clip); an epoch is {result['epoch_clips']} clips (the train split has "
        f"{result['train_split_clips']}), drawn from {result['train_clips']} clips of "
        f"{', '.join(result['train_files'])}.",
        "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    if "decode" in result and "error" not in result["decode"]:
        d = result["decode"]
        lines += [
            "## Decode (DecodeClips, training augmentation)",
            "",
            f"One core: {d['one_core_clips_per_s']:.0f} clips/s; {d['cores']} processes: "
            f"{d['all_cores_clips_per_s']:.0f} clips/s.",
            "",
        ]
    if "epochs" in result:
        lines += [
            "## Training epochs (a warm-up epoch first; the second timed)",
            "",
            "| precision | batch | seconds | clips/s | peak GiB | x fp32, same batch "
            "| decode on all cores / GPU rate |",
            "|---|---|---|---|---|---|---|",
        ]
        done = [e for e in result["epochs"] if "error" not in e]
        fp32 = {e["batch_size"]: e["clips_per_s"] for e in done if e["precision"] == "fp32"}
        feed = result.get("decode", {}).get("all_cores_clips_per_s")
        for e in result["epochs"]:
            if "error" in e:
                lines.append(f"| {e['precision']} | {e['batch_size']} | failed: see Errors | | | | |")
                continue
            ratio = f"{e['clips_per_s'] / fp32[e['batch_size']]:.2f}" if e["batch_size"] in fp32 else "-"
            fed = f"{feed / e['clips_per_s']:.1f}" if feed else "-"
            lines.append(
                f"| {e['precision']} | {e['batch_size']} | {e['seconds']:.2f} | {e['clips_per_s']:.1f} | "
                f"{e.get('peak_memory_gib', float('nan')):.2f} | {ratio} | {fed} |"
            )
        lines.append("")
    if "ddp" in result and "error" not in result["ddp"]:
        e = result["ddp"]
        lines += [
            f"## One-process DDP ({e['backend']})",
            "",
            f"{e['precision']}, batch {e['batch_size']}: {e['seconds']:.2f} s, {e['clips_per_s']:.1f} clips/s; "
            f"validation of the model after its two epochs, through the group's all-reduce: J {e['val_J']:.3f}.",
            "",
        ]
    if "learning" in result:
        curves = {k: v for k, v in result["learning"].items() if isinstance(v, list) and v}
        lines += [
            f"## Learning on the {result['train_clips']} training clips, validated on {result['val_clips']} "
            f"clips of {', '.join(result['val_files'])}",
            "",
            "| epoch | bf16 loss | bf16 J | fp32 loss | fp32 J | visible union J |",
            "|---|---|---|---|---|---|",
        ]
        for epoch in range(max((len(c) for c in curves.values()), default=0)):
            cells = []
            for precision in ("bf16", "fp32"):
                row = curves.get(precision, [])[epoch : epoch + 1]
                cells += [f"{row[0]['loss']:.3f}", f"{row[0]['val_J']:.3f}"] if row else ["-", "-"]
            union = next(c[epoch]["val_visible_union_J"] for c in curves.values() if len(c) > epoch)
            lines.append(f"| {epoch} | {' | '.join(cells)} | {union:.3f} |")
        lines.append("")
    if result.get("errors"):
        lines += ["## Errors", ""] + [f"- {e['what']}: {e['error']}" for e in result["errors"]] + [""]
    return "\n".join(lines)


def write(result: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpu_epoch.json").write_text(json.dumps(result, indent=1) + "\n")
    (folder / "gpu_epoch.md").write_text(render(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--shards", default="data/shards/stamps", help="folder whose manifest gives the defaults")
    parser.add_argument("--train", nargs="+", help="training shard files (default: the manifest's train split)")
    parser.add_argument("--val", nargs="+", help="validation shard files (default: the manifest's val split)")
    parser.add_argument("--epoch-clips", type=int, help="clips in an epoch (default: the manifest's train split)")
    parser.add_argument("--batch-sizes", default="4,16,32", help="comma-separated; the first is also DDP's")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--learn-epochs", type=int, help="default: train.epochs; 0 leaves out the learning curves")
    parser.add_argument("--sections", default="decode,epochs,ddp,learning", help="which of them to run")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --device cpu for a dry run")

    cfg = load_config(args.params)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    train_files = args.train or shard_files(args.shards, "train")
    val_files = args.val or shard_files(args.shards, "val")
    split_clips = read_manifest(Path(args.shards))["splits"]["train"]["clips"]
    epoch_clips = args.epoch_clips or split_clips
    num_frames = int(max(max_frames(train_files), max_frames(val_files)))
    rows = read_rows(train_files, with_visible=False)
    val_columns = decode(read_rows(val_files, with_visible=True), cfg, num_frames, train=False)
    val = batches_of(val_columns, cfg.train.batch_size)
    result: dict = {
        "benchmark": "gpu_epoch",
        "image_size": cfg.train.image_size,
        "num_frames": num_frames,
        "epoch_clips": epoch_clips,
        "train_split_clips": split_clips,
        "train_files": ["/".join(Path(f).parts[-2:]) for f in train_files],
        "val_files": ["/".join(Path(f).parts[-2:]) for f in val_files],
        "train_clips": rows.num_rows,
        "val_clips": len(val_columns["clip_id"]),
        "environment": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
        },
    }

    def measure(what: str, run, **labels):
        """run(), or the error it raised (printed, and recorded with `labels`): one failure leaves the rest measured."""
        print(f"{what} ...", flush=True)
        try:
            return run()
        except Exception as error:  # noqa: BLE001 - a benchmark reports what failed and goes on
            traceback.print_exc()
            result.setdefault("errors", []).append({"what": what, "error": f"{type(error).__name__}: {error}"})
            return {**labels, "error": f"{type(error).__name__}: {error}"}

    sections = args.sections.split(",")
    if "decode" in sections:
        result["decode"] = measure("decode", lambda: decode_rates(rows, cfg, num_frames))
        write(result, args.results)

    for precision in args.precisions.split(",") if "epochs" in sections else []:
        result.setdefault("epochs", [])
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            result["epochs"].append(
                measure(
                    f"epoch: {precision}, batch {batch_size}",
                    lambda: timed_epoch(cfg, rows, num_frames, epoch_clips, batch_size, device, precision == "bf16")[0],
                    precision=precision,
                    batch_size=batch_size,
                )
            )
            write(result, args.results)

    if "ddp" in sections:
        result["ddp"] = measure("one-process DDP", lambda: ddp_epoch(cfg, rows, val, num_frames, epoch_clips, device))
        write(result, args.results)

    learn_epochs = cfg.train.epochs if args.learn_epochs is None else args.learn_epochs
    if "learning" in sections and learn_epochs:
        result["learning"] = {}
        for precision in ("bf16", "fp32"):
            result["learning"][precision] = measure(
                f"learning: {precision}",
                lambda: learning_curve(cfg, rows, val, num_frames, learn_epochs, device, precision == "bf16"),
            )
            write(result, args.results)
    print(render(result))


if __name__ == "__main__":
    main()
