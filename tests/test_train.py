"""Ray Train end to end on the small stamps shards: DDP on 2 CPU workers, export, resume, restarts.

The multi-node run (two Ray nodes on loopback, workers on both) is `tests/test_standin.py`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def write_params(repo: Path, name: str, **train) -> Path:
    settings = {
        "epochs": 2,
        "batch_size": 2,
        "image_size": 48,
        "num_workers": 1,
        "threads_per_worker": 1,
        "storage_path": str(repo / "ray" / name),
        "tracking_uri": f"sqlite:///{repo / name}.db",
        **train,
    }
    params = {
        "preprocess": {"image_size": 64, "num_workers": 1},
        "model": {"backbone_weights": None, "decoder_dim": 16, "ama": {"groups": [4, 4, 4, 2], "grouping_tokens": 64}},
        "train": settings,
    }
    path = repo / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def start_training(repo: Path, params: Path, progress: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "avs.cli", *([] if progress else ["--no-progress"]), "--params", str(params), "train"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def wait_for_checkpoint(storage: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    # the controller writes its snapshot once it has registered a reported checkpoint
    while not list(storage.glob("*/checkpoint_manager_snapshot.json")):
        assert process.poll() is None, process.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.5)


def history_epochs(repo: Path) -> list[int]:
    """The epochs listed in metrics/train_history.csv (the DVC plot of every epoch)."""
    with open(repo / "metrics" / "train_history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_two_workers_train_in_sync_and_export(stamps_repo):
    # with progress bars, as `avs train` run by hand shows them (the DVC stage turns them off)
    output = finish(start_training(stamps_repo, write_params(stamps_repo, "ddp", num_workers=2), progress=True))
    # rank 0's step bar (drawn by the driver) and one line per epoch, once (the driver may stop
    # before the last epoch's lines reach it, so the first epoch's are checked)
    assert re.search(r"train epoch 0 \(1/2\).*\d+/\d+", output), output[-3000:]
    summary = (
        r"avs train: epoch 0 \(1/2\): loss [\d.]+, cst [\d.e-]+, rp_gap [\d.e-]+, "
        r"val J [\d.]+ \(hard [\d.]+, ms3 [\d.]+, s4 [\d.]+\), [\d.]+ clips/s"
    )
    assert len(re.findall(summary, output)) == 1, output[-3000:]
    metrics = json.loads((stamps_repo / "metrics" / "train.json").read_text())
    assert metrics["workers_in_sync"] == 1.0 and metrics["epoch"] == 1
    assert 0 <= metrics["val_J"] <= 1 and "val_ms3_J" in metrics
    assert 0 <= metrics["train_data_wait_share"] <= 1
    history = (stamps_repo / "metrics" / "train_history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_total,val_J,val_F") and len(history) == 3
    model = stamps_repo / "models" / "stamps"
    assert {p.name for p in model.iterdir()} == {"model.safetensors", "config.json", "state.json"}
    assert json.loads((model / "config.json").read_text())["train"]["num_workers"] == 2

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{stamps_repo / 'ddp'}.db")
    (run,) = client.search_runs([client.get_experiment_by_name("avs").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/J")] == [0, 1]
    assert run.data.params["train.num_workers"] == "2" and len(run.data.tags["mlflow.source.git.commit"]) == 40
    assert run.data.tags["avs.precision"] == "fp32"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} >= {"model/model.safetensors"}
    # Our code runs in the driver and the RayTrainWorker processes: a traceback there fails the
    # test. Ray's own helpers may print one from a background thread (seen in CI: Ray Data's
    # ListFiles at teardown; PlacementGroupCleaner while another Ray instance shuts down).
    ray_process = re.compile(r"\((?!RayTrainWorker)[\w()]+ pid=\d+")
    lines = output.splitlines()
    ours = [i for i, line in enumerate(lines) if "Traceback" in line and not ray_process.search(line)]
    assert not ours, "\n".join(lines[ours[0] : ours[0] + 30]) if ours else ""


def test_an_interrupted_stage_resumes_after_its_last_checkpoint(stamps_repo):
    params = write_params(stamps_repo, "resume", epochs=3)
    first = start_training(stamps_repo, params)
    wait_for_checkpoint(stamps_repo / "ray" / "resume", first)
    os.killpg(first.pid, signal.SIGKILL)  # the whole stage dies: driver, Ray and workers
    first.wait()
    output = finish(start_training(stamps_repo, params))
    assert "avs train: resuming after epoch" in output
    assert json.loads((stamps_repo / "models" / "stamps" / "state.json").read_text())["epoch"] == 2
    assert history_epochs(stamps_repo) == [0, 1, 2]  # the epochs before the interruption too


def test_a_killed_worker_restarts_from_the_last_checkpoint(stamps_repo):
    params = write_params(stamps_repo, "failure", epochs=3, num_workers=2, max_failures=2)
    process = start_training(stamps_repo, params)
    wait_for_checkpoint(stamps_repo / "ray" / "failure", process)
    workers = subprocess.run(["pgrep", "-f", "ray::RayTrainWorker"], capture_output=True, text=True).stdout.split()
    assert workers, "no Ray Train worker process found"
    os.kill(int(workers[-1]), signal.SIGKILL)
    output = finish(process)
    assert "avs train: resuming after epoch" in output
    metrics = json.loads((stamps_repo / "metrics" / "train.json").read_text())
    assert metrics["epoch"] == 2 and metrics["workers_in_sync"] == 1.0
    assert history_epochs(stamps_repo) == [0, 1, 2]
