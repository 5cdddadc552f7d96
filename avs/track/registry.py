"""The MLflow model registry: register an evaluated model, promote it through a gate, list versions.

A registered version is a pyfunc model logged as code (`avs/track/pyfunc_model.py`) whose
artifacts are the model folder (`model.safetensors` + `config.json`): loading it never
unpickles anything. Each version is tagged with its test metrics, which the promotion gate reads.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avs.config import Config
from avs.data.media import SAMPLE_RATE
from avs.model.saved import CONFIG_FILE, MODEL_FILE
from avs.model.weights import WeightsError
from avs.paths import metrics_dir, model_dir, registered_file, report_dir
from avs.track.evaluation import log_evaluation
from avs.track.runs import existing_run
from avs.track.runs import tracking_uri as default_tracking_uri

CHAMPION = "champion"
# version tags copied from metrics/evaluate.json: tag name -> its path in that file
METRIC_TAGS = {
    "test_J": ("test", "J"),
    "test_F": ("test", "F"),
    "ece": ("calibration", "final", "ece"),
    "auroc_u": ("calibration", "final", "auroc_u"),
    "muted_J": ("robustness", "muted_J"),
    "swapped_J": ("robustness", "swapped_J"),
    "visual_only_J": ("robustness", "visual_only_clean_J"),
}


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unknown model or version, nothing evaluated yet)."""


def _metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    tags = {}
    for tag, path in METRIC_TAGS.items():
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and value == value:  # NaN (e.g. no u without UE) is left out
            tags[tag] = f"{value:.6f}"
    return tags


def register(cfg: Config, repo_root: Path = Path("."), uri: str | None = None) -> dict[str, Any]:
    """Log `models/<dataset>/` as a pyfunc model in its evaluation run and register a new version."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    repo_root = repo_root.resolve()
    folder, reports = model_dir(cfg, repo_root), report_dir(cfg, repo_root)
    evaluation, run_file = metrics_dir(repo_root) / "evaluate.json", reports / "mlflow.json"
    for needed in (folder / MODEL_FILE, folder / CONFIG_FILE, evaluation, run_file):
        if not needed.is_file():
            raise RegistryError(f"{needed}: not found; run the train and evaluate stages first (`dvc repro evaluate`)")
    metrics = json.loads(evaluation.read_text())
    run_id = json.loads(run_file.read_text())["run_id"]
    uri = uri or default_tracking_uri(cfg, repo_root)
    if existing_run(_client(uri), run_id) is None:  # evaluated against another store: log the evaluation to this one
        run_id = log_evaluation(cfg, repo_root, metrics, uri, record=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    signature = ModelSignature(
        inputs=Schema(
            [
                TensorSpec(np.dtype(np.float32), (-1, -1, 3, -1, -1), "frames"),
                TensorSpec(np.dtype(np.float32), (-1, -1, SAMPLE_RATE), "audio"),
            ]
        ),
        outputs=Schema(
            [
                TensorSpec(np.dtype(np.float32), (-1, -1, -1, -1), "probability"),
                TensorSpec(np.dtype(np.float32), (-1, -1, -1, -1), "uncertainty"),
            ]
        ),
    )
    tags = {"dataset": cfg.data.dataset, **_metric_tags(metrics)}
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="registered_model",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(folder)},
            # the test-time settings the evaluate stage used (its metrics are the version's tags)
            model_config=metrics.get("protocol"),
            signature=signature,
            pip_requirements=_requirements(),
            code_paths=_code_paths(),
            registered_model_name=cfg.registry.model_name,
            tags=tags,
        )
    version = str(info.registered_model_version)
    client = _client(uri)
    for key, value in tags.items():
        client.set_model_version_tag(cfg.registry.model_name, version, key, value)
    record = {
        "name": cfg.registry.model_name,
        "version": version,
        "uri": f"models:/{cfg.registry.model_name}/{version}",
        "run_id": run_id,
        "tags": tags,
    }
    registered_file(cfg, repo_root).write_text(json.dumps(record, indent=1) + "\n")
    return record


# What loading and running the registered model imports, besides the code it ships.
RUNTIME_PACKAGES = (
    "torch",
    "torchvision",
    "torchaudio",
    "timm",
    "safetensors",
    "kornia",
    "numpy",
    "pyyaml",
    "pillow",
    "tqdm",
    "mlflow",
)


def _requirements() -> list[str]:
    """The pinned packages the registered model needs, as installed here."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in RUNTIME_PACKAGES]


def _code_paths() -> list[str]:
    """The code the registered model ships: this package, and the `aisfx` wheel's (its network
    class and checkpoint; the wheel cannot be a requirement, since its pins predate numpy 2)."""
    import avs

    paths = [str(Path(avs.__file__).parent)]
    try:
        import aisfx
    except ImportError:  # a model with another audio encoder does not need it
        return paths
    return [*paths, str(Path(aisfx.__file__).parent)]


@dataclass
class Decision:
    """What `promote` did, and why."""

    promoted: bool
    version: str
    reason: str

    def __post_init__(self) -> None:
        self.version = str(self.version)  # SQLite stores give ints, HTTP servers strings


def promote(cfg: Config, version: str | None = None, uri: str | None = None, repo_root: Path = Path(".")) -> Decision:
    """Move the champion alias to `version` (default: the newest) if it passes the gate in params."""
    client = _client(uri or default_tracking_uri(cfg, repo_root.resolve()))
    name = cfg.registry.model_name
    versions = _versions(client, name)
    candidate = next((v for v in versions if str(v.version) == str(version)), None) if version else versions[0]
    if candidate is None:
        raise RegistryError(f"{name}: no version {version} (versions: {', '.join(str(v.version) for v in versions)})")
    j, ece = _tag(candidate, "test_J"), _tag(candidate, "ece")
    if j is None or ece is None:
        return Decision(
            False,
            candidate.version,
            f"version {candidate.version} has no test_J/ece tags: register it from an evaluated model",
        )
    champion = _champion(client, name)
    if champion is not None and str(champion.version) == str(candidate.version):
        return Decision(False, candidate.version, f"version {candidate.version} already holds @{CHAMPION}")
    if ece > cfg.registry.max_ece:
        return Decision(False, candidate.version, f"ECE {ece:.4f} is above registry.max_ece {cfg.registry.max_ece:g}")
    if champion is not None:
        needed = (_tag(champion, "test_J") or 0.0) + cfg.registry.min_improvement
        if j < needed:
            return Decision(
                False,
                candidate.version,
                f"test J {j:.4f} is below champion v{champion.version}'s "
                f"{_tag(champion, 'test_J'):.4f} + margin {cfg.registry.min_improvement:g} = {needed:.4f}",
            )
        why = (
            f"test J {j:.4f} >= champion v{champion.version}'s {_tag(champion, 'test_J'):.4f} "
            f"+ margin {cfg.registry.min_improvement:g}"
        )
    else:
        why = "there was no champion"
    client.set_registered_model_alias(name, CHAMPION, candidate.version)
    return Decision(True, candidate.version, f"{why}; ECE {ece:.4f} <= {cfg.registry.max_ece:g}")


def list_versions(cfg: Config, uri: str | None = None, repo_root: Path = Path(".")) -> list[dict[str, Any]]:
    """Every version of the registered model, newest first, with aliases and key metrics."""
    client = _client(uri or default_tracking_uri(cfg, repo_root.resolve()))
    name = cfg.registry.model_name
    versions = _versions(client, name)
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in versions:
        rows.append(
            {
                "version": str(v.version),
                "aliases": aliases.get(str(v.version), []),
                **{tag: _tag(v, tag) for tag in METRIC_TAGS},
                "run_id": v.run_id,
            }
        )
    return rows


def _client(uri: str):
    """A client whose registry is the same store (else MLflow uses the process-wide registry URI)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _versions(client, name: str) -> list:
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)
    if not versions:
        raise RegistryError(f"no registered model '{name}' in {client.tracking_uri}; run the register stage first")
    return versions


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _tag(version, key: str) -> float | None:
    value = (version.tags or {}).get(key)
    return float(value) if value is not None else None


def resolve_model_folder(uri_or_path: str, tracking_uri: str | None = None) -> Path:
    """A local model folder for a path, or for a `models:/...`/`runs:/...` URI (downloaded)."""
    path = Path(uri_or_path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise WeightsError(f"{path}: no {MODEL_FILE} in this folder (expected a folder written by `avs train`)")
        return path
    if "://" not in uri_or_path and ":/" not in uri_or_path:
        raise WeightsError(
            f"{uri_or_path}: no such model folder (give a folder with {MODEL_FILE}, or models:/<name>@champion)"
        )
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri_or_path, dst_path=tempfile.mkdtemp(prefix="avs-model-"), tracking_uri=tracking_uri
        )
    )
    found = sorted(local.rglob(MODEL_FILE))
    if not found:
        raise WeightsError(f"{uri_or_path}: the downloaded model has no {MODEL_FILE}")
    return found[0].parent
