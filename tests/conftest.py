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


def write_model_folder(folder: Path, **model) -> Path:
    """A model folder as `avs train` exports it, with random weights (no training): 64 px, small; run at 80 px."""
    import json

    from safetensors.torch import save_file

    from avs.config import config_from_dict, config_to_dict
    from avs.model import build_model

    cfg = config_from_dict(
        {
            "model": {"backbone_weights": None, "ama": {"groups": [4, 4, 4, 4]}, **model},
            "train": {"image_size": 64},
            "evaluate": {"image_size": 80},
        }
    )
    torch_model = build_model(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    (folder / "state.json").write_text(json.dumps({"epoch": 0, "metrics": {}, "run_id": None}))
    return folder


@pytest.fixture
def model_repo(stamps_repo, tmp_path) -> Path:
    """A scratch repository: the small set's shards (shared, read-only) and an untrained model."""
    repo = tmp_path / "repo"
    (repo / "data" / "shards").mkdir(parents=True)
    (repo / "data" / "shards" / "stamps").symlink_to(stamps_repo / "data" / "shards" / "stamps")
    write_model_folder(repo / "models" / "stamps")
    return repo


def dvc(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run dvc in `project` with this venv's tools on PATH; fails the test with its output on error."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        **(env or {}),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(project),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return result.stdout + result.stderr


def make_tiny_project(project: Path) -> Path:
    """A scratch copy of the project (git + DVC) with params for a pipeline run of a minute or two."""
    import shutil
    import subprocess

    import yaml

    project.mkdir(parents=True)
    for name in ("avs", "pipelines"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", project)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["stamps"].update(
        image_size=64,
        clips={"s4": 6, "ms3": 6, "hard": 6},
        deb_dir=str(REPO / ".cache/debs"),
        unpack_dir=str(REPO / ".cache/tuxpaint-stamps"),
    )
    params["preprocess"].update(image_size=64, num_workers=1)
    params["model"].update(
        decoder_dim=16, ama={**params["model"]["ama"], "groups": [4, 4, 4, 2], "grouping_tokens": 64}
    )
    params["train"].update(epochs=1, image_size=48, batch_size=2, threads_per_worker=1)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc(project, "init", "-q")
    shutil.copy(REPO / ".dvcignore", project)  # after `dvc init`, which writes an empty one
    return project


def evaluate_and_log(cfg, repo: Path, uri: str) -> dict:
    """The evaluate stage as `avs evaluate` runs it: the scores and files, then their MLflow record."""
    from avs.eval.evaluate import evaluate
    from avs.track.evaluation import log_evaluation

    metrics = evaluate(cfg, repo, progress=False)
    log_evaluation(cfg, repo, metrics, uri)
    return metrics
