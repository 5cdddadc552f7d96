"""The data stages as functions: `fetch` (make a dataset available) and `preprocess` (shards).

Their folders are `avs.paths.raw_dir` and `avs.paths.shards_dir` (`data/raw/<dataset>/`,
`data/shards/<dataset>/`).
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from avs.config import Config
from avs.data.clip import ClipRef
from avs.data.errors import DataError
from avs.data.preprocess import preprocess_source
from avs.data.sources import open_source
from avs.data.sources.base import SPLITS, Source
from avs.data.stamps.build import build_stamps
from avs.paths import raw_dir, shards_dir

INDEX = "index.json"
_MISSING_SHOWN = 10


def fetch(cfg: Config, repo_root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Build the embedded dataset, or check a real one in place and index it.

    A real dataset is not copied: `data/raw/<dataset>/index.json` records its root, clip counts
    and a fingerprint of every file the metadata names (so DVC sees when it changes).
    """
    out = raw_dir(cfg, repo_root)
    if cfg.data.dataset == "stamps":
        return build_stamps(cfg.stamps, out, repo_root, progress)
    root = Path(cfg.data.root or "").expanduser().resolve()
    if not root.is_dir():
        raise DataError(root, f"dataset folder not found; set data.root to where {cfg.data.dataset} is on disk")
    source = open_source(cfg.data, root)
    missing, fingerprint = _scan(source)
    if missing and not cfg.data.allow_incomplete:
        shown = "\n".join(f"  {path}  (named by {ref.origin})" for ref, path in missing[:_MISSING_SHOWN])
        raise DataError(root, f"incomplete {cfg.data.dataset}: {len(missing)} files named by the metadata "
                              f"are missing, e.g.\n{shown}\nRestore them, or set data.allow_incomplete: true")
    index = {
        "dataset": source.name,
        "root": str(root),
        "clips": {split: sum(1 for c in source.clips if c.split == split) for split in SPLITS},
        "missing": [str(path) for _, path in missing],
        "fingerprint": fingerprint,
    }
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{INDEX}.partial"
    partial.write_text(json.dumps(index, indent=1) + "\n")
    partial.replace(out / INDEX)
    return index


def preprocess(cfg: Config, repo_root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Shard the dataset fetched by `fetch` into `data/shards/<dataset>/`."""
    raw = raw_dir(cfg, repo_root)
    if cfg.data.dataset == "stamps":
        root = raw
    else:
        index = raw / INDEX
        if not index.is_file():
            raise DataError(index, "not found: run the fetch stage first (`dvc repro fetch`)")
        root = Path(json.loads(index.read_text())["root"])
    source = open_source(cfg.data, root)
    return preprocess_source(source, shards_dir(cfg, repo_root), cfg.preprocess, progress)


def _scan(source: Source) -> tuple[list[tuple[ClipRef, Path]], str]:
    """One stat of every file the metadata names: the missing ones, and a fingerprint of all."""
    digest = hashlib.sha256()
    missing = []
    for ref in source.clips:
        for path in ref.files():
            try:
                info = path.stat()
            except OSError:
                info = None
            if info is None or not stat.S_ISREG(info.st_mode):  # as ClipRef.missing_files: files only
                missing.append((ref, path))
                size = mtime = -1
            else:
                size, mtime = info.st_size, info.st_mtime_ns
            digest.update(f"{path}|{size}|{mtime}\n".encode())
    return missing, digest.hexdigest()
