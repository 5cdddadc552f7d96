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
