"""Adapter for the embedded `stamps` dataset: the AVSBench S4 and MS3 readers plus its extras."""

from __future__ import annotations

import json
from pathlib import Path

from avs.data.errors import DataError
from avs.data.sources.avsbench import ms3_clips, s4_clips
from avs.data.sources.base import Source


def load_stamps_source(root: Path) -> Source:
    """The `s4`, `ms3` and `hard` subsets with one category id space (categories.json)."""
    path = root / "categories.json"
    if not path.is_file():
        raise DataError(path, "not found: run the fetch stage (`dvc repro fetch`) to build the stamps dataset")
    categories = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    s4, _ = s4_clips(root, "s4", categories)
    clips = s4 + ms3_clips(root, "ms3", categories) + ms3_clips(root, "hard", categories)
    return Source("stamps", "binary", 2, {"background": 0, **categories}, clips)
