"""Shared fixtures: a small embedded `stamps` dataset, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from avs.config import StampsClips, StampsConfig

REPO = Path(__file__).resolve().parents[1]


def small_stamps_config(seed: int = 0) -> StampsConfig:
    return StampsConfig(seed=seed, image_size=96, clips=StampsClips(s4=8, ms3=10, hard=10))


@pytest.fixture(scope="session")
def stamps_root(tmp_path_factory) -> Path:
    """A small stamps dataset (needs the .deb that `make setup` downloads)."""
    from avs.data.stamps.build import build_stamps

    out = tmp_path_factory.mktemp("stamps") / "stamps"
    build_stamps(small_stamps_config(), out, repo_root=REPO, progress=False)
    return out


@pytest.fixture(scope="session")
def stamps_repo(stamps_root, tmp_path_factory) -> Path:
    """A scratch repository root with the small stamps set preprocessed into 64 px shards."""
    from avs.config import config_from_dict
    from avs.data.stages import preprocess

    repo = tmp_path_factory.mktemp("repo")
    (repo / "data" / "raw").mkdir(parents=True)
    (repo / "data" / "raw" / "stamps").symlink_to(stamps_root)
    cfg = config_from_dict({"preprocess": {"image_size": 64, "num_workers": 1}})
    preprocess(cfg, repo, progress=False)
    return repo
