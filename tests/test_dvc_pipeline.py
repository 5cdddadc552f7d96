"""A tiny `dvc repro` of the whole pipeline in a scratch copy of the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import dvc as _dvc
from tests.conftest import make_tiny_project

pytestmark = pytest.mark.slow


def _set(project: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def project(tmp_path) -> Path:
    return make_tiny_project(tmp_path / "project")


def test_repro_runs_once_and_reruns_only_what_changed(project):
    first = _dvc(project, "repro")
    for stage in ("fetch", "preprocess", "weights", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in first
    manifest = json.loads((project / "data/shards/stamps/manifest.json").read_text())
    assert manifest["clips"] == 18 and manifest["skipped"] == []
    assert (project / "data/raw/stamps/s4_meta_data.csv").is_file()
    assert (project / "models/stamps/model.safetensors").is_file()
    metrics = _dvc(project, "metrics", "show")
    assert (
        "val_J" in metrics
        and "test.J" in metrics
        and "calibration.final.ece" in metrics
        and "robustness.muted_J" in metrics
    )
    assert "reliability" in _dvc(project, "plots", "show", "--json")
    registered = json.loads((project / "reports/stamps/registered.json").read_text())
    assert registered["uri"] == "models:/avs-stamps/1"
    listing = subprocess.run(
        [sys.executable, "-m", "avs.cli", "models"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(project)},
    )
    assert listing.returncode == 0 and listing.stdout.splitlines()[1].split()[0] == "1", listing.stdout + listing.stderr

    again = _dvc(project, "repro")
    assert "Running stage" not in again and "up to date" in again
    # bytecode Python writes beside the code (unless PYTHONDONTWRITEBYTECODE) is not a change to it
    (project / "avs/model/__pycache__").mkdir(exist_ok=True)
    (project / "avs/model/__pycache__/ravs.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert "up to date" in _dvc(project, "status"), _dvc(project, "status")

    # where it runs is not the model: no stage goes stale; a new tracking URI re-registers only
    original = (project / "params.yaml").read_text()
    for key, value in (
        ("ray_address", "ray://elsewhere:10001"),
        ("storage_path", "s3://bucket/ray"),
        ("max_failures", 7),
        ("threads_per_worker", 3),
        ("cpus_per_worker", 2),
    ):
        _set(project, "train", key, value)
    assert "up to date" in _dvc(project, "status"), _dvc(project, "status")
    _set(project, "train", "tracking_uri", "http://mlflow.elsewhere:5000")
    status = _dvc(project, "status")
    assert "register:" in status and "train:" not in status and "evaluate:" not in status, status
    _set(project, "train", "lr", 0.01)  # a training setting still retrains
    assert "train:" in _dvc(project, "status")
    (project / "params.yaml").write_text(original)

    # an evaluation setting reruns evaluation and registration only
    _set(project, "evaluate", "overlays", 2)
    changed = _dvc(project, "repro")
    for stage in ("fetch", "preprocess", "weights", "train"):
        assert f"Stage '{stage}' didn't change, skipping" in changed
    assert "Running stage 'evaluate'" in changed and "Running stage 'register'" in changed
    assert json.loads((project / "reports/stamps/registered.json").read_text())["version"] == "2"

    # new shards make training and evaluation stale: `dvc status` says so without training again
    _set(project, "preprocess", "jpeg_quality", 80)
    _dvc(project, "repro", "preprocess")
    status = _dvc(project, "status")
    for stage in ("train", "evaluate"):
        assert f"{stage}:\n\tchanged deps:\n\t\tmodified:           data/shards/stamps" in status, status
    assert "fetch:" not in status and "weights:" not in status

    _set(project, "stamps", "seed", 7)
    status = _dvc(project, "status")
    assert "fetch:" in status and "modified:           stamps" in status
