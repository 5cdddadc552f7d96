"""The workspace layout: where each stage reads and writes, relative to the repository root.

These are the paths `dvc.yaml` names as the stages' deps and outs; every stage takes them from
here, so the pipeline and the code cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from avs.config import Config


def raw_dir(cfg: Config, repo_root: Path = Path(".")) -> Path:
    """The `fetch` stage's output: the built embedded set, or a real dataset's index."""
    return repo_root / "data" / "raw" / cfg.data.dataset


def shards_dir(cfg: Config, repo_root: Path = Path(".")) -> Path:
    """The `preprocess` stage's output: Parquet shards and manifest.json."""
    return repo_root / "data" / "shards" / cfg.data.dataset


def model_dir(cfg: Config, repo_root: Path = Path(".")) -> Path:
    """Where the `train` stage exports the model of `cfg.data.dataset`."""
    return repo_root / "models" / cfg.data.dataset


def metrics_dir(repo_root: Path = Path(".")) -> Path:
    """The stages' metrics and plot tables (train.json, evaluate.json, *.csv), kept in git."""
    return repo_root / "metrics"


def report_dir(cfg: Config, repo_root: Path = Path(".")) -> Path:
    """The `evaluate` stage's images and the MLflow run it logged to (mlflow.json)."""
    return repo_root / "reports" / cfg.data.dataset / "evaluation"


def registered_file(cfg: Config, repo_root: Path = Path(".")) -> Path:
    """The `register` stage's record of the version it registered."""
    return repo_root / "reports" / cfg.data.dataset / "registered.json"


def local_tracking_db(repo_root: Path = Path(".")) -> Path:
    """The embedded MLflow store used when no tracking URI is set."""
    return repo_root / "mlflow.db"
