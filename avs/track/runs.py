"""MLflow runs: the tracking URI, the experiment, and the `train` stage's run (opened, logged per epoch, closed)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from avs.config import Config
from avs.paths import local_tracking_db


def tracking_uri(cfg: Config, repo_root: Path = Path(".")) -> str:
    """params' `train.tracking_uri`, else $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db."""
    return (
        cfg.train.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{local_tracking_db(repo_root).resolve()}"
    )


def existing_run(client, run_id: str | None) -> str | None:
    """`run_id` if the client's store has that run, else None (a run logged to another store)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id).info.run_id
    except MlflowException:
        return None


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


def _git_commit() -> str:
    """The commit of the avs code that runs (its checkout, wherever the data repository is)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def open_training_run(uri: str, cfg: Config, resolved: dict, manifest: dict, name: str, storage: str) -> str:
    """The `train` stage's MLflow run, one per Ray Train run (`name`): reopened (same id) when the
    stage resumes. Tags say where it ran and from what; params are the resolved config."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment_id = get_or_create_experiment(client, uri, cfg.train.experiment)
    existing = client.search_runs([experiment_id], filter_string=f"tags.`avs.ray_run` = '{name}'", max_results=1)
    if existing:
        return existing[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            "avs.ray_run": name,
            "avs.storage_path": storage,
            "mlflow.source.git.commit": _git_commit(),
            "avs.dataset": cfg.data.dataset,
            "avs.shards_manifest_sha256": hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest(),
        },
    )
    params = [mlflow.entities.Param(k, str(v)[:500]) for k, v in _flatten(resolved).items()]
    client.log_batch(run.info.run_id, params=params)  # MLflow splits it into requests of its size limit
    return run.info.run_id


def finish_training_run(uri: str, run_id: str, model_folder: Path) -> None:
    """Attach the exported model folder to the training run and close the run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    client.log_artifacts(run_id, str(model_folder), artifact_path="model")
    client.set_terminated(run_id)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class EpochLogger:
    """Rank 0's per-epoch MLflow logging into the run the driver opened (`open_training_run`)."""

    def __init__(self, uri: str, run_id: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        self.run_id = run_id

    def tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def log(self, metrics: dict[str, float], epoch: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, epoch) for k, v in metrics.items() if k != "epoch" and math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=entries)
