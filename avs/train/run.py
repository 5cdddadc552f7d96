"""The `train` stage: start or join Ray, stream the shards, run `TorchTrainer`, export the model.

Outputs (paths fixed by the dataset name, like the data stages):
    models/<dataset>/model.safetensors, config.json, state.json   the final model
    metrics/train.json            the final epoch's metrics (DVC metrics)
    metrics/train_history.csv     one row per epoch (DVC plots)
An interrupted stage resumes: the Ray Train run is named after the params and the shards, so
running it again with the same inputs continues after the last checkpoint in `storage_path`.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from avs.config import RUNTIME_SETTINGS, Config, ConfigError, config_to_dict
from avs.data.preprocess import read_manifest
from avs.data.publish import publish_shards, published_files
from avs.data.stream import max_frames, read_clips, shard_files
from avs.model.weights import WeightsError
from avs.paths import metrics_dir, model_dir, shards_dir
from avs.track.runs import finish_training_run, open_training_run, tracking_uri
from avs.train.checkpoint import MODEL_FILE, STATE_FILE, read_state


def train(cfg: Config, repo_root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Train the model on the shards of `cfg.data.dataset` and export it; returns the final metrics."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from avs.train.loop import train_loop_per_worker

    repo_root = repo_root.resolve()
    shards = shards_dir(cfg, repo_root)
    train_files, val_files = shard_files(shards, "train"), shard_files(shards, "val")
    manifest = read_manifest(shards)
    num_frames = max_frames(train_files + val_files)
    t = cfg.train
    resolved = config_to_dict(cfg)
    if cfg.model.backbone_weights:
        resolved["model"]["backbone_weights"] = str((repo_root / cfg.model.backbone_weights).resolve())
    if cfg.model.audio_weights:
        resolved["model"]["audio_weights"] = str((repo_root / cfg.model.audio_weights).resolve())
    for key in ("backbone_weights", "audio_weights"):  # fail here, not inside every Ray worker and its retries
        if resolved["model"][key] and not Path(resolved["model"][key]).is_file():
            raise WeightsError(
                f"model.{key}: {resolved['model'][key]}: weight file not found "
                "(the default EfficientNet-Lite0 file is written by `dvc repro weights`)"
            )

    uri = tracking_uri(cfg, repo_root)
    # a local instance gets the machine's CPUs for Ray Data on top of what the workers reserve,
    # otherwise workers holding every CPU would starve the decoding tasks that feed them
    _init_ray(t.ray_address, progress, local_cpus=(os.cpu_count() or 1) + t.num_workers * t.cpus_per_worker)
    require_reachable_tracking(uri)
    if t.shards_uri:  # every node reads the shards from there, not from this machine's disk
        location = publish_shards(shards, t.shards_uri)
        train_files, val_files = (published_files(location, manifest, split) for split in ("train", "val"))
    weights = {key: _share_file(resolved["model"][key]) for key in ("backbone_weights", "audio_weights")}
    steps_per_epoch = math.ceil(manifest["splits"]["train"]["clips"] / (t.worker_batch_size * t.num_workers))
    name = run_name(cfg, manifest)
    storage = t.storage_path if "://" in t.storage_path else str((repo_root / t.storage_path).resolve())
    run_id = open_training_run(uri, cfg, resolved, manifest, name, storage)

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": resolved,
            "weights": {key: shared for key, shared in weights.items() if shared},
            "threads": t.threads_per_worker,
            "steps_per_epoch": steps_per_epoch,
            "run_id": run_id,
            "tracking_uri": uri,
            "progress": progress,
        },
        scaling_config=ScalingConfig(
            num_workers=t.num_workers,
            use_gpu=t.use_gpu,
            resources_per_worker={"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={
            "train": read_clips(
                train_files,
                image_size=t.image_size,
                num_frames=num_frames,
                augment=t.augment,
                shuffle_seed=t.seed if t.shuffle else None,
                with_visible=False,
            ),
            "val": read_clips(val_files, image_size=t.image_size, num_frames=num_frames, augment=None),
        },
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {name} in {storage} finished without a checkpoint")
    out = model_dir(cfg, repo_root)
    with result.checkpoint.as_directory() as folder:
        state = read_state(folder)
        _export(Path(folder), out)
    _write_metrics(repo_root, state["metrics"], state["history"])
    finish_training_run(uri, run_id, out)
    return state["metrics"]


# The code that determines a training's result: the train stage's code deps in dvc.yaml
# (tests/test_run_name.py checks that the two lists agree).
RESULT_CODE = (
    "model",
    "train",
    "data/batch.py",
    "data/collate.py",
    "data/stream.py",
    "data/shards.py",
    "data/audio.py",
    "eval/metrics.py",
    "eval/audio_cache.py",
)


def run_name(cfg: Config, manifest: dict[str, Any]) -> str:
    """A name fixed by what determines the result: model, loss and train params, the shards and the code.

    An interrupted run resumes from its checkpoints only under the same name: changed code starts
    afresh instead of continuing from weights that another version of the code trained.
    """
    relevant = {k: config_to_dict(cfg)[k] for k in ("data", "model", "loss", "train")}
    for runtime in RUNTIME_SETTINGS:
        relevant["train"].pop(runtime)
    shards = [s["sha256"] for split in manifest["splits"].values() for s in split["shards"]]
    digest = hashlib.sha256(json.dumps([relevant, shards, code_fingerprint()], sort_keys=True).encode()).hexdigest()[
        :12
    ]
    return f"{cfg.data.dataset}-{digest}"


def code_fingerprint() -> str:
    """SHA-256 over the Python sources in `RESULT_CODE` (paths and syntax trees, in sorted order).

    The syntax tree without docstrings, so that formatting, comments and docs do not start a
    training afresh (or drop a kept ablation result); any change to the code does.
    """
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for entry in RESULT_CODE:
        path = package / entry
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(source.relative_to(package)).encode())
            digest.update(_code_only(source.read_bytes()))
    return digest.hexdigest()


def _code_only(source: bytes) -> bytes:
    """A module's syntax tree with its docstrings left out, as text (the source if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _share_file(path: str | None):
    """(file name, object ref of its bytes) for a weight file, so that workers on any node get it
    from Ray's object store rather than from this machine's path; None for no file."""
    import ray

    return None if not path else (Path(path).name, ray.put(Path(path).read_bytes()))


def require_reachable_tracking(uri: str) -> None:
    """Stop a run on a Ray cluster of several nodes whose tracking URI is local to this machine:
    rank 0 logs from whichever node it lands on, where a local file store does not exist."""
    import ray

    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if local and len(nodes) > 1:
        raise ConfigError(
            f"train.tracking_uri: {uri} is on this machine, but the Ray cluster has {len(nodes)} nodes and rank 0 "
            "may run on another; set train.tracking_uri (or MLFLOW_TRACKING_URI) to a tracking server every node "
            "reaches, e.g. http://mlflow.avs.svc:5000 (infra/mlflow)"
        )


def _init_ray(address: str | None, progress: bool, local_cpus: int) -> None:
    import ray
    import ray.data

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=local_cpus, log_to_driver=True)  # the dashboard (127.0.0.1:8265) serves the state API
    if not progress:
        ray.data.DataContext.get_current().enable_progress_bars = False


def _export(checkpoint: Path, out: Path) -> None:
    """Copy the final weights and state to `models/<dataset>/` atomically."""
    scratch = out.with_name(out.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shutil.copy2(checkpoint / MODEL_FILE, scratch / MODEL_FILE)
    state = read_state(checkpoint)
    (scratch / "config.json").write_text(json.dumps(state["config"], indent=1) + "\n")
    (scratch / STATE_FILE).write_text(json.dumps({k: v for k, v in state.items() if k != "config"}, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)


def _write_metrics(repo_root: Path, final: dict[str, Any], history: list[dict[str, Any]]) -> None:
    folder = metrics_dir(repo_root)
    folder.mkdir(exist_ok=True)
    (folder / "train.json").write_text(json.dumps({k.replace("/", "_"): v for k, v in final.items()}, indent=1) + "\n")
    columns = ["epoch", "train/total", "val/J", "val/F"] + sorted(
        k
        for k in (history[-1] if history else {})
        if k.startswith("val_") or (k.startswith("train/") and k != "train/total")
    )
    with open(folder / "train_history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.replace("/", "_") for c in columns])
        for row in history:
            writer.writerow([row.get(c, "") for c in columns])
