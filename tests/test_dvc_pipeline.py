"""A tiny `dvc repro` of the whole pipeline in a scratch copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _dvc(project: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(project)}
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _set(project: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def project(tmp_path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("avs", "pipelines"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", project)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["stamps"].update(image_size=64, clips={"s4": 6, "ms3": 6, "hard": 6},
                            deb_dir=str(REPO / ".cache/debs"), unpack_dir=str(REPO / ".cache/tuxpaint-stamps"))
    params["preprocess"].update(image_size=64, num_workers=1)
    params["model"].update(decoder_dim=16, ama={**params["model"]["ama"], "groups": [4, 4, 4, 2], "grouping_tokens": 64})
    params["train"].update(epochs=1, image_size=48, batch_size=2, threads_per_worker=1)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    _dvc(project, "init", "-q")
    return project


def test_repro_runs_once_and_reruns_only_what_changed(project):
    first = _dvc(project, "repro")
    for stage in ("fetch", "preprocess", "weights", "train"):
        assert f"Running stage '{stage}'" in first
    manifest = json.loads((project / "data/shards/stamps/manifest.json").read_text())
    assert manifest["clips"] == 18 and manifest["skipped"] == []
    assert (project / "data/raw/stamps/s4_meta_data.csv").is_file()
    assert (project / "models/stamps/model.safetensors").is_file()
    assert "val_J" in _dvc(project, "metrics", "show")

    again = _dvc(project, "repro")
    assert "Running stage" not in again and "up to date" in again

    _set(project, "preprocess", "jpeg_quality", 80)
    changed = _dvc(project, "repro")
    assert "Stage 'fetch' didn't change, skipping" in changed and "Stage 'weights' didn't change, skipping" in changed
    assert "Running stage 'preprocess'" in changed and "Running stage 'train'" in changed

    _set(project, "stamps", "seed", 7)
    status = _dvc(project, "status")
    assert "fetch:" in status and "modified:           stamps" in status
