"""The evaluate stage's MLflow record: its metrics, test-time settings and pictures."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from avs.config import Config
from avs.paths import metrics_dir, model_dir, report_dir
from avs.track.runs import existing_run, get_or_create_experiment
from avs.track.runs import tracking_uri as default_tracking_uri


def log_evaluation(
    cfg: Config, repo_root: Path, metrics: dict[str, Any], tracking_uri: str | None = None, record: bool = True
) -> str:
    """Log the evaluate stage's metrics and pictures to the training's run when the store has it,
    else to a new run; returns its id, and with `record` writes it to the report folder's mlflow.json."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    repo_root = repo_root.resolve()
    uri = tracking_uri or default_tracking_uri(cfg, repo_root)
    folder, reports = model_dir(cfg, repo_root), report_dir(cfg, repo_root)
    metrics_file = metrics_dir(repo_root) / "evaluate.json"
    client = MlflowClient(uri)
    state = json.loads((folder / "state.json").read_text()) if (folder / "state.json").is_file() else {}
    run_id = existing_run(client, state.get("run_id"))
    if run_id is None:  # e.g. a model trained against another tracking store
        experiment_id = get_or_create_experiment(client, uri, cfg.train.experiment)
        run_id = client.create_run(
            experiment_id,
            run_name=f"evaluate-{cfg.data.dataset}",
            tags={"avs.dataset": cfg.data.dataset, "avs.trained_run": str(state.get("run_id"))},
        ).info.run_id
    flat = {f"test/{k}": v for k, v in metrics["test"].items()}
    flat.update({f"calibration/{name}/{k}": v for name, row in metrics["calibration"].items() for k, v in row.items()})
    flat.update({f"robustness/{k}": v for k, v in metrics["robustness"].items()})
    flat.update({f"attribution/{k}": v for k, v in metrics["attribution"].items()})
    now = int(time.time() * 1000)
    entries = [
        Metric(k.replace("&", "and"), float(v), now, 0)
        for k, v in flat.items()
        if isinstance(v, (int, float)) and math.isfinite(v)
    ]
    client.log_batch(run_id, metrics=entries)  # MLflow splits it into requests of its size limit
    protocol = metrics["protocol"]
    client.set_tag(
        run_id,
        "avs.test_time",
        f"{protocol['image_size']} px"
        + (", flip-averaged" if protocol["flip"] else "")
        + (f", guided filter {protocol['guided_kernel']} px" if protocol["guided_kernel"] else ""),
    )
    client.log_artifact(run_id, str(metrics_file), "evaluation")
    client.log_artifact(run_id, str(reports / "reliability.png"), "evaluation")
    if (reports / "overlays").is_dir():
        client.log_artifacts(run_id, str(reports / "overlays"), "evaluation/overlays")
    if record:
        (reports / "mlflow.json").write_text(json.dumps({"run_id": run_id}, indent=1) + "\n")
    return run_id
