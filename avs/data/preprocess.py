"""The preprocess stage: decode every clip of a source and write it to Parquet shards.

Clips are decoded in parallel worker processes, in input order, so the same inputs and params give
the same shards. Output is written to a scratch folder and swapped in at the end: a crash or a
bad clip (with `on_error: raise`) leaves the previous shards untouched and no partial output.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from avs.config import PreprocessConfig, config_to_dict
from avs.data.clip import ClipRef, load_clip
from avs.data.errors import DataError
from avs.data.shards import SCHEMA, SCHEMA_VERSION, encode_clip
from avs.data.sources.base import SPLITS, Source

MANIFEST = "manifest.json"
ROW_GROUP_CLIPS = 32  # small row groups let Ray Data split a shard across readers


@dataclass
class _SplitWriter:
    """Accumulates one split's rows and writes a shard whenever they reach the target size."""

    folder: Path
    target_bytes: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    pending_bytes: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any], size: int) -> None:
        self.rows.append(row)
        self.pending_bytes += size
        if self.pending_bytes >= self.target_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{len(self.shards):05d}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=SCHEMA)
        pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_CLIPS)
        self.shards.append({
            "path": f"{self.folder.name}/{path.name}",
            "clips": len(self.rows),
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        })
        self.rows, self.pending_bytes = [], 0


def preprocess_source(source: Source, out_dir: Path, cfg: PreprocessConfig, progress: bool = True) -> dict[str, Any]:
    """Write the shards and manifest of `source` to `out_dir` (replaced atomically).

    Returns:
        The manifest.

    Raises:
        DataError: the first bad clip, when `cfg.on_error == "raise"`.
    """
    scratch = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    target = int(cfg.shard_target_mb * 1024 * 1024)
    writers = {split: _SplitWriter(scratch / split, target) for split in SPLITS}
    subsets: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    skipped, padded = [], []
    clips = _in_writing_order(source.clips)
    jobs = [(ref, source.name, cfg.image_size, cfg.jpeg_quality, cfg.max_audio_shortfall_s) for ref in clips]
    pool = None
    try:
        if cfg.num_workers > 1 and len(jobs) > 1:
            pool = multiprocessing.get_context("spawn").Pool(cfg.num_workers, initializer=_init_worker)
            results = pool.imap(_process_clip, jobs, chunksize=1)
        else:
            results = map(_process_clip, jobs)
        bar = tqdm(results, total=len(jobs), desc=f"preprocess {source.name}", unit="clip", disable=not progress)
        for ref, outcome in zip(clips, bar):
            if isinstance(outcome, DataError):
                if cfg.on_error == "raise":
                    raise outcome
                skipped.append({"clip_id": ref.clip_id, "split": ref.split, "file": outcome.path,
                                "reason": outcome.reason})
                continue
            row, size, shortfall = outcome
            if shortfall > 0:
                padded.append({"clip_id": ref.clip_id, "file": str(ref.audio_files()[0]), "shortfall_s": round(shortfall, 4)})
            writers[ref.split].add(row, size)
            subsets[ref.split][ref.subset] = subsets[ref.split].get(ref.subset, 0) + 1
        for writer in writers.values():
            writer.flush()
        manifest = _manifest(source, cfg, writers, subsets, skipped, padded)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    except BaseException:
        if pool is not None:
            pool.terminate()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    _swap_in(scratch, out_dir)
    return manifest


def _in_writing_order(clips: list[ClipRef]) -> list[ClipRef]:
    """The train split in a seeded random order, so that every shard file mixes the subsets and a
    shuffle of the files plus a local buffer mixes an epoch (`train.shuffle`); val and test keep
    the source's order, in which the official metric code forms its batches (`compat`)."""
    train = [ref for ref in clips if ref.split == "train"]
    order = np.random.default_rng(TRAIN_ORDER_SEED).permutation(len(train))
    return [train[i] for i in order] + [ref for ref in clips if ref.split != "train"]


TRAIN_ORDER_SEED = 0


def read_manifest(shards_dir: Path) -> dict[str, Any]:
    path = shards_dir / MANIFEST
    if not path.is_file():
        raise DataError(path, "shard manifest not found: run the preprocess stage")
    return json.loads(path.read_text())


def _process_clip(job: tuple[ClipRef, str, int | None, int, float]) -> tuple[dict[str, Any], int, float] | DataError:
    ref, dataset, image_size, quality, max_shortfall_s = job
    try:
        clip = load_clip(ref, max_shortfall_s)
        row = encode_clip(clip, dataset, image_size, quality)
    except DataError as err:
        return err
    size = sum(len(b) for b in row["frames"]) + sum(len(b or b"") for b in row["masks"])
    size += sum(len(b) for b in row["visible_masks"] or ()) + sum(len(b) for b in row["audio"])
    return row, size, clip.audio_shortfall_s


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; torch's own threads would oversubscribe


def _manifest(source: Source, cfg: PreprocessConfig, writers: dict[str, _SplitWriter],
              subsets: dict[str, dict[str, int]], skipped: list[dict[str, str]],
              padded: list[dict[str, Any]]) -> dict[str, Any]:
    splits = {
        split: {
            "clips": sum(s["clips"] for s in writer.shards),
            "bytes": sum(s["bytes"] for s in writer.shards),
            "subsets": dict(sorted(subsets[split].items())),
            "shards": writer.shards,
        }
        for split, writer in writers.items()
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": source.name,
        "label_kind": source.label_kind,
        "num_classes": source.num_classes,
        "categories": source.categories,
        "preprocess": config_to_dict(cfg),
        "clips": sum(s["clips"] for s in splits.values()),
        "bytes": sum(s["bytes"] for s in splits.values()),
        "splits": splits,
        "skipped": skipped,
        "padded_audio": padded,  # clips whose audio was short and padded with silence at the end
    }


def _swap_in(scratch: Path, out_dir: Path) -> None:
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    scratch.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
