"""Dataset adapters. `open_source` picks the one named by `data.dataset`."""

from __future__ import annotations

from pathlib import Path

from avs.config import DataConfig
from avs.data.sources.avsbench import load_avsbench_ms3, load_avsbench_s4, load_avss
from avs.data.sources.base import Source
from avs.data.sources.stamps import load_stamps_source
from avs.data.sources.vpo import load_vpo


def open_source(cfg: DataConfig, root: Path) -> Source:
    """The dataset `cfg.dataset` read from `root`."""
    if cfg.dataset == "stamps":
        return load_stamps_source(root)
    if cfg.dataset == "avsbench_s4":
        return load_avsbench_s4(root)
    if cfg.dataset == "avsbench_ms3":
        return load_avsbench_ms3(root)
    if cfg.dataset == "avss":
        return load_avss(root)
    return load_vpo(root, cfg.dataset.removeprefix("vpo_"), cfg)
