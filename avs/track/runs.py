"""Where runs are tracked: the tracking URI and the experiment (shared by train, evaluate, register)."""

from __future__ import annotations

import os
from pathlib import Path

from avs.config import Config


def tracking_uri(cfg: Config, repo_root: Path = Path(".")) -> str:
    """params' `train.tracking_uri`, else $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db."""
    return cfg.train.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(repo_root / 'mlflow.db').resolve()}"


def get_or_create_experiment(client, uri: str, name: str) -> str:
    """The id of experiment `name`, created if needed.

    A SQLite store keeps its artifacts next to the database file (mlruns/), not in whatever
    directory the command runs from; a server decides its artifact root itself.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "mlruns" if uri.startswith("sqlite:///") else None
    return client.create_experiment(name, artifact_location=artifacts and artifacts.resolve().as_uri())
