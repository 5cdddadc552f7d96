"""Input and training throughput: Ray Data vs a per-file DataLoader vs what the model consumes.

All rows come from one run on one machine, over the train split of the shards in
data/shards/<dataset> (run `dvc repro preprocess` first):

1. Ray Data alone: `read_clips` (read Parquet, shuffle, decode, clip-consistent augmentation)
   iterated with `iter_torch_batches`, as a training worker receives it. Three passes: the
   first pays for the executor's start-up; the second (warm) reads files in the page cache; the
   third (cold) runs right after the page cache is dropped, as every epoch over a dataset larger
   than the machine's memory reads from disk (Linux, as root; left out where not allowed, or
   with --warm-only). A pass reading only the clip ids gives Ray Data's fixed cost per pass
   (seconds), and the warm rate with that cost taken out is what a dataset large enough to
   amortise it would approach.
2. The AVS peers' way: the same clips written once as per-file frames, PNG masks and a 16-bit
   WAV, read by a `torch.utils.data.DataLoader` (same decode and augmentation code,
   `--loader-workers` processes). Twice: with JPEG frames (as AVSS and VPO ship them, at the
   shards' JPEG quality) and with PNG frames (as AVSBench S4 and MS3 ship them). The same three
   passes; the files lie on the shards' disk.
3. The decode alone: `DecodeClips` over the undecoded rows in memory, one process of one
   thread; times the cores, the most any loader running this decode could deliver here.
4. The model's consumption: forward + backward + optimizer step of the configured model on
   ready batches (one process, all threads), in clips/s.
5. The machine's own ceiling for two workers: 1 and 2 independent one-thread processes running
   the model's steps at once (no Ray, no DDP, no data loading), and 2 such processes in one gloo
   DDP group (gradients averaged every step, still no Ray and no data loading).
6. Training throughput of the real `train` stage with 1 and 2 Ray Train workers of one thread
   each: two epochs each, clips/s as the loop reports it, and the share of the training time
   rank 0 waited for its next batch. The second epoch counts, as for the data paths; the first
   also pays for Ray Data's executor start-up. With one worker the second core is left to Ray
   Data's decoding and Ray's own processes; with two, they take it from the workers.

Writes benchmarks/results/data_throughput.{json,md} (or STEM.{json,md} with --stem).

    python benchmarks/data_throughput.py [--params params.yaml] [--loader-workers 2] [--stem NAME]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile
import torch
from model_cost import write_results  # benchmarks/model_cost.py
from PIL import Image

from avs.config import config_from_dict, config_to_dict, load_config
from avs.data.audio import to_pcm16
from avs.data.collate import CollateClips, iter_clip_batches
from avs.data.media import SAMPLE_RATE
from avs.data.shards import SCHEMA, decode_row
from avs.data.stream import DecodeClips, max_frames, read_clips, read_shard_rows, shard_files
from avs.paths import shards_dir


def drop_page_cache() -> bool:
    """Evict the OS page cache (Linux, as root), so that the next pass reads from disk, as every
    epoch does over a dataset larger than the machine's memory. False where it is not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed_passes(iterate, cold: bool) -> dict[str, float]:
    """Clips/s of a first pass (start-up included), a warm pass (files in the page cache) and,
    with `cold`, a pass right after dropping the page cache. `iterate()` yields ClipBatches."""
    rates = {}
    for name in ("first_pass", "warm", "cold") if cold else ("first_pass", "warm"):
        if name == "cold":
            drop_page_cache()
        clips, start = 0, time.perf_counter()
        for batch in iterate():
            clips += len(batch.clip_id)
        rates[name] = clips / (time.perf_counter() - start)
    return rates


def ray_pass_overhead(files: list[str]) -> float:
    """Seconds per pass of Ray Data over the shards reading only the clip ids: its fixed cost per
    pass (planning, starting the read tasks, the executor), paid every epoch whatever the data."""
    dataset = read_shard_rows(files).select_columns(["clip_id"])  # read as `read_clips` reads
    times = []
    for _ in range(4):
        start = time.perf_counter()
        for _ in dataset.iter_batches(batch_size=4):
            pass
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def ray_data_rate(files: list[str], cfg, num_frames: int, cold: bool) -> dict[str, float]:
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = read_clips(
        files,
        image_size=cfg.train.image_size,
        num_frames=num_frames,
        augment=cfg.train.augment,
        shuffle_seed=cfg.train.seed if cfg.train.shuffle else None,
        with_visible=False,
    )  # as the train stage reads it
    rates = timed_passes(  # as a training worker iterates it (with its local shuffle buffer)
        lambda: iter_clip_batches(
            dataset,
            batch_size=cfg.train.batch_size,
            shuffle_buffer=cfg.train.shuffle_buffer if cfg.train.shuffle else 0,
            seed=cfg.train.seed,
        ),
        cold,
    )
    rates["pass_overhead_s"] = ray_pass_overhead(files)
    ray.shutdown()
    return rates


def decode_rate(files: list[str], cfg, num_frames: int) -> float:
    """Clips/s of the training decode and augmentation alone (`DecodeClips`, batches of 8 rows):
    one process, one thread, the undecoded rows already in memory. Times the machine's cores,
    it bounds what any loader running this decode can deliver."""
    decode = DecodeClips(image_size=cfg.train.image_size, num_frames=num_frames, augment=cfg.train.augment)
    tables = [pq.read_table(f, columns=[n for n in SCHEMA.names if n != "visible_masks"]) for f in files]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clips, start = 0, time.perf_counter()
        for table in tables:
            for offset in range(0, table.num_rows, 8):
                clips += len(decode(table.slice(offset, 8))["clip_id"])
        return clips / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def export_per_file(files: list[str], folder: Path, quality: int, frame_format: str) -> list[Path]:
    """Write every clip as frame_<t>.<jpg|png>, mask_<t>.png and audio.wav (16 kHz, 16 bit) in its own folder."""
    clips = []
    for file in files:
        for row in pq.read_table(file).to_pylist():
            clip = decode_row(row)
            out = folder / clip.clip_id
            out.mkdir(parents=True)
            for t, (frame, mask) in enumerate(zip(clip.frames, clip.masks)):
                Image.fromarray(frame).save(out / f"frame_{t}.{frame_format}", quality=quality)
                Image.fromarray(mask).save(out / f"mask_{t}.png")
            soundfile.write(out / "audio.wav", clip.audio.reshape(-1), SAMPLE_RATE, subtype="PCM_16")
            (out / "meta.json").write_text(
                json.dumps({"subset": clip.subset, "annotated": clip.mask_annotated.tolist()})
            )
            clips.append(out)
    return clips


class PerFileClips(torch.utils.data.Dataset):
    """A clip per folder of image files, decoded with PIL as the AVS codebases do."""

    def __init__(self, folders: list[Path], decode: DecodeClips):
        self.folders, self.decode = folders, decode

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        folder = self.folders[index]
        meta = json.loads((folder / "meta.json").read_text())
        frames = sorted(folder.glob("frame_*"))
        row = {  # the same decode + augmentation code path as the shards: only the reading differs
            "clip_id": folder.name,
            "subset": meta["subset"],
            "split": "train",
            "num_frames": len(frames),
            "category_ids": [],
            "frames": [f.read_bytes() for f in frames],
            "masks": [(folder / f"mask_{t}.png").read_bytes() for t in range(len(frames))],
            "mask_annotated": meta["annotated"],
            "sounding": meta["annotated"],
            "visible_masks": None,
            "audio": to_pcm16(soundfile.read(folder / "audio.wav", dtype="float32")[0].reshape(len(frames), -1)),
        }
        import pyarrow as pa

        out = self.decode(pa.Table.from_pylist([{**row, "dataset": "x", "height": 0, "width": 0}], schema=SCHEMA))
        return {k: v[0] for k, v in out.items()}


def dataloader_rate(folders: list[Path], cfg, num_frames: int, workers: int, cold: bool) -> dict[str, float]:
    decode = DecodeClips(image_size=cfg.train.image_size, num_frames=num_frames, augment=cfg.train.augment)
    loader = torch.utils.data.DataLoader(
        PerFileClips(folders, decode),
        batch_size=cfg.train.batch_size,
        num_workers=workers,
        shuffle=True,
        collate_fn=_stack,
    )
    return timed_passes(lambda: iter(loader), cold)


def _stack(items: list[dict[str, np.ndarray]]):
    return CollateClips()({k: np.stack([i[k] for i in items]) for k in items[0]})


def model_rate(cfg, num_frames: int, steps: int, ddp: bool = False) -> float:
    """Clips/s of forward + backward + optimizer steps on random batches; `ddp`: wrapped in
    DistributedDataParallel (the process group must be initialised), as a training worker's model is."""
    from avs.model import build_model, compute_losses
    from avs.train.step import freeze_audio_encoder, make_optimizer, set_training_mode

    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone_weights=None)))
    if cfg.model.freeze_audio:
        freeze_audio_encoder(model)
    set_training_mode(model, cfg.model.freeze_audio)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(model, cfg)
    b, size = cfg.train.batch_size, cfg.train.image_size
    frames, audio = torch.rand(b, num_frames, 3, size, size), torch.randn(b, num_frames, 16000) * 0.1
    masks, labelled = (torch.rand(b, num_frames, size, size) > 0.8).long(), torch.ones(b, num_frames, dtype=torch.bool)

    def step() -> None:
        losses = compute_losses(model(frames, audio), masks, labelled, cfg.loss, 1.0)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * b / (time.perf_counter() - start)


def _one_thread_model_rate(cfg, num_frames: int, steps: int, barrier, results, rank: int, ddp_port: int | None) -> None:
    torch.set_num_threads(1)
    if ddp_port is not None:
        torch.distributed.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{ddp_port}", rank=rank, world_size=barrier.parties
        )
    barrier.wait()  # start together: the processes share the machine's cores and memory bandwidth
    results.put(model_rate(cfg, num_frames, steps, ddp=ddp_port is not None))
    if ddp_port is not None:
        torch.distributed.destroy_process_group()


def parallel_rate(cfg, num_frames: int, steps: int, processes: int, ddp: bool = False) -> float:
    """Clips/s of `processes` one-thread model processes running at once, without Ray or data loading.

    Independent (`ddp` False), two of them against one is the most that two one-thread workers
    can reach on this machine; in one gloo DDP group (`ddp`), what gradient averaging leaves of it.
    """
    import multiprocessing
    import socket

    port = None
    if ddp:
        with socket.socket() as probe:  # a free port for the group's rendezvous
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=_one_thread_model_rate, args=(cfg, num_frames, steps, barrier, results, rank, port))
        for rank in range(processes)
    ]
    for child in children:
        child.start()
    rates = [results.get() for _ in children]
    for child in children:
        child.join()
    return sum(rates)


def scratch_training(cfg, repo: Path, workers: int, scratch: Path) -> tuple[Path, dict]:
    """A scratch repository for a benchmark's run of the train stage (the repo's shards and weights
    linked in, so that its outputs stay there) and the `train` settings of that run: two epochs of
    `workers` one-thread workers, checkpoints and MLflow under `scratch`."""
    scratch_repo = scratch / f"repo{workers}"
    (scratch_repo / "data" / "shards").mkdir(parents=True)
    (scratch_repo / "data" / "shards" / cfg.data.dataset).symlink_to(shards_dir(cfg, repo).resolve())
    (scratch_repo / "data" / "weights").symlink_to((repo / "data" / "weights").resolve())
    settings = {
        "epochs": 2,
        "num_workers": workers,
        "threads_per_worker": 1,
        "storage_path": str(scratch / f"ray{workers}"),
        "tracking_uri": f"sqlite:///{scratch / 'mlflow.db'}",
        "experiment": "benchmark",
    }
    return scratch_repo, settings


def training_rate(cfg, repo: Path, workers: int, scratch: Path) -> list[tuple[float, float]]:
    """Two epochs of the real train stage (`scratch_training`).

    Returns each epoch's clips/s and the share of its training time rank 0 spent waiting for data.
    """
    from avs.train.run import train

    scratch_repo, settings = scratch_training(cfg, repo, workers, scratch)
    raw = config_to_dict(cfg)
    raw["train"].update(settings)
    train(config_from_dict(raw), scratch_repo, progress=False)
    import ray

    ray.shutdown()
    with open(scratch_repo / "metrics" / "train_history.csv", newline="") as handle:
        return [
            (float(row["train_clips_per_s"]), float(row["train_data_wait_share"])) for row in csv.DictReader(handle)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--model-steps", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true", help="leave out the 1- and 2-worker training epochs")
    parser.add_argument("--warm-only", action="store_true", help="leave out the passes after dropping the page cache")
    parser.add_argument(
        "--stem", default="data_throughput", help="results file name: benchmarks/results/STEM.{json,md}"
    )
    args = parser.parse_args()
    cfg = load_config(args.params)
    repo = Path(".").resolve()
    files = shard_files(shards_dir(cfg, repo), "train")
    num_frames = max_frames(files)
    torch.set_num_threads(os.cpu_count() or 1)
    rates: dict[str, float] = {}
    cold = not args.warm_only and drop_page_cache()  # dropping it once also tells whether we may
    # the per-file copies go next to the shards, on the same disk
    with tempfile.TemporaryDirectory(dir=shards_dir(cfg, repo).parent) as scratch:
        scratch = Path(scratch)
        print("ray data ...", flush=True)
        rates.update({f"ray_data_{k}": v for k, v in ray_data_rate(files, cfg, num_frames, cold).items()})
        print("per-file DataLoader ...", flush=True)
        for frame_format in ("jpg", "png"):
            folders = export_per_file(files, scratch / "clips", cfg.preprocess.jpeg_quality, frame_format)
            passes = dataloader_rate(folders, cfg, num_frames, args.loader_workers, cold)
            rates.update({f"per_file_dataloader_{frame_format}_frames_{k}": v for k, v in passes.items()})
            shutil.rmtree(scratch / "clips")
        print("decode alone ...", flush=True)
        rates["decode_one_core"] = decode_rate(files, cfg, num_frames)
        print("model consumption ...", flush=True)
        rates["model_consumption"] = model_rate(cfg, num_frames, args.model_steps)
        for processes in (1, 2):
            print(f"{processes} independent one-thread model process(es) ...", flush=True)
            rates[f"model_{processes}_independent_processes"] = parallel_rate(
                cfg, num_frames, args.model_steps, processes
            )
        print("2 one-thread model processes in a DDP group ...", flush=True)
        rates["model_2_ddp_processes"] = parallel_rate(cfg, num_frames, args.model_steps, 2, ddp=True)
        if not args.skip_training:
            for workers in (1, 2):
                print(f"training, {workers} worker(s) ...", flush=True)
                first, second = training_rate(cfg, repo, workers, scratch)
                rates[f"training_{workers}_workers_first_epoch"], rates[f"training_{workers}_workers"] = (
                    first[0],
                    second[0],
                )
                rates[f"training_{workers}_workers_data_wait_share"] = second[1]
    write(rates, cfg, args, len(folders))


def write(rates: dict[str, float], cfg, args, clips: int) -> None:
    checks = [("Ray Data >= 3x the model's consumption", rates["ray_data_warm"] / rates["model_consumption"], 3.0)]
    for cache in ("warm", "cold"):
        if f"ray_data_{cache}" not in rates:
            continue
        for frame_format, shipped in (("jpg", "JPEG frames (AVSS, VPO)"), ("png", "PNG frames (AVSBench S4, MS3)")):
            checks.append(
                (
                    f"Ray Data >= 2x the per-file DataLoader, {shipped}, {cache} page cache",
                    rates[f"ray_data_{cache}"] / rates[f"per_file_dataloader_{frame_format}_frames_{cache}"],
                    2.0,
                )
            )
    # Over a larger dataset the fixed cost per pass weighs less: the rate with it taken out
    seconds = clips / rates["ray_data_warm"] - rates["ray_data_pass_overhead_s"]
    rates["ray_data_warm_without_pass_overhead"] = clips / seconds if seconds > 0 else float("inf")
    checks.append(
        (
            "Ray Data without its fixed cost per pass >= 2x the per-file DataLoader, JPEG frames, warm",
            rates["ray_data_warm_without_pass_overhead"] / rates["per_file_dataloader_jpg_frames_warm"],
            2.0,
        )
    )
    rates["decode_all_cores"] = rates["decode_one_core"] * (os.cpu_count() or 1)  # no process does anything else
    checks.append(
        (
            "the machine's decode ceiling (every core decoding, nothing else) >= 2x the per-file DataLoader, "
            "JPEG frames, warm: else no loader with this decode can meet the 2x target here",
            rates["decode_all_cores"] / rates["per_file_dataloader_jpg_frames_warm"],
            2.0,
        )
    )
    if "training_2_workers" in rates:
        checks.append(
            ("2 training workers >= 1.7x one", rates["training_2_workers"] / rates["training_1_workers"], 1.7)
        )
    checks.append(
        (
            "this machine's ceiling: 2 independent one-thread model processes >= 1.7x one",
            rates["model_2_independent_processes"] / rates["model_1_independent_processes"],
            1.7,
        )
    )
    checks.append(
        (
            "2 one-thread model processes in a DDP group, no Ray, no data loading >= 1.7x one",
            rates["model_2_ddp_processes"] / rates["model_1_independent_processes"],
            1.7,
        )
    )
    result = {
        "benchmark": "data_throughput",
        "cpus": os.cpu_count(),
        "clips": clips,
        "image_size": cfg.train.image_size,
        "batch_size": cfg.train.batch_size,
        "loader_workers": args.loader_workers,
        "clips_per_s": {k: round(v, 2) for k, v in rates.items()},
        "targets": [{"target": name, "ratio": round(ratio, 2), "met": ratio >= goal} for name, ratio, goal in checks],
    }
    lines = [
        f"# Data and training throughput ({os.cpu_count()} CPUs, {clips} train clips, {cfg.train.image_size} px, "
        f"batch {cfg.train.batch_size}, one run)",
        "",
        "| path | clips/s |",
        "|---|---|",
    ]
    units = {"_s": " (seconds, not clips/s)", "_share": " (share of the epoch's training time, not clips/s)"}
    lines += [
        f"| {k.replace('_', ' ')}{next((u for end, u in units.items() if k.endswith(end)), '')} | {v:.2f} |"
        for k, v in rates.items()
    ]
    lines += ["", "| target | ratio | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['ratio']} | {'yes' if t['met'] else 'no'} |" for t in result["targets"]]
    write_results(args.stem, result, "\n".join(lines) + "\n", "cpu", False)


if __name__ == "__main__":
    main()
