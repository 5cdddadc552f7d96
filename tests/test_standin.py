"""The loopback stand-in of infra/: S3 remote, MLflow server and a Ray cluster, all real processes.

The tiny pipeline's data goes through the S3 remote (`dvc push`, wipe, `dvc pull`), trains on
two hidden Ray nodes (their own mount namespaces: none of the driver's files) with shards and
checkpoints in s3://, survives the loss of a node, and evaluates and registers over HTTP.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, dvc, make_tiny_project

pytestmark = pytest.mark.slow


def load_standin():
    spec = importlib.util.spec_from_file_location("standin", REPO / "infra" / "local" / "standin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def s3_keys(env: dict[str, str], prefix: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="avs", Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def listeners_of_server_at(url: str) -> set[str]:
    """The addresses every process of the server listening at `url` (and its children) listens on."""
    import psutil

    port = int(url.rsplit(":", 1)[1])
    sockets = psutil.net_connections(kind="inet")
    (pid,) = {c.pid for c in sockets if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    root = psutil.Process(pid)
    while root.parent() is not None and root.parent().cmdline()[:3] == root.cmdline()[:3]:
        root = root.parent()  # a worker of the server: start from the server itself
    family = {root.pid} | {p.pid for p in root.children(recursive=True)}
    return {c.laddr.ip for c in sockets if c.status == psutil.CONN_LISTEN and c.pid in family}


def wait_for_s3_checkpoint(env: dict[str, str], process: subprocess.Popen, timeout_s: float = 600) -> None:
    """Until the controller has registered a reported checkpoint in s3://avs/ray (it writes its
    snapshot then; a checkpoint folder alone may be one it never registered)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(key.endswith("checkpoint_manager_snapshot.json") for key in s3_keys(env, "ray/")):
            return
        assert process.poll() is None, "the pipeline ended before its first checkpoint:\n" + process.stdout.read()
        time.sleep(0.5)
    raise AssertionError("no checkpoint in s3://avs/ray in time")


def test_pipeline_on_hidden_nodes_through_s3_survives_a_lost_node(tmp_path):
    """The cluster's failure modes at once: the driver's node hosts no worker; the two worker nodes
    see none of the driver's files (data, weights, mlflow.db), so shards, weights, checkpoints and
    tracking must all reach them through S3, Ray and the MLflow server. A worker node is killed
    after the first checkpoint and a fresh hidden node takes its place: training resumes from the
    S3 checkpoint without losing an epoch, then evaluates, registers and promotes over HTTP."""
    import re

    from mlflow.tracking import MlflowClient

    standin = load_standin()
    project = make_tiny_project(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    # one 2-CPU worker per 3-CPU node: the two workers land on different nodes
    params["train"].update(
        num_workers=2, cpus_per_worker=2, epochs=3, storage_path="s3://avs/ray", shards_uri="s3://avs/shards"
    )
    params["registry"].update(max_ece=1.0)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(project, "repro", "weights", "preprocess")
    root = tmp_path / "standin"
    root.mkdir()

    with standin.object_store(root) as s3, standin.tracking_server(root) as mlflow:
        for server in (s3["AWS_ENDPOINT_URL"], mlflow["MLFLOW_TRACKING_URI"]):
            assert listeners_of_server_at(server) == {"127.0.0.1"}, f"{server} must listen on loopback only"
        cluster = standin.RayCluster(root, s3, hide=project)
        try:
            cluster.start_head(0)  # the driver's node: no training worker, no data task
            cluster.add_node("second", 3, hidden=True)
            cluster.add_node("third", 3, hidden=True)
            env = {**s3, **mlflow, **cluster.environment()}
            standin.configure_dvc_remote(project, env)
            dvc(project, "push", env=env)
            assert any(key.startswith("dvc/files/md5/") for key in s3_keys(env, "dvc/"))
            shutil.rmtree(project / ".dvc" / "cache")
            shutil.rmtree(project / "data" / "shards")
            (project / "data" / "weights" / "efficientnet_lite0.safetensors").unlink()
            dvc(project, "pull", "preprocess", "weights", env=env)
            assert (project / "data/shards/stamps/manifest.json").is_file()

            process = subprocess.Popen(
                [sys.executable.rsplit("/", 1)[0] + "/dvc", "repro"],
                cwd=project,
                env={
                    **__import__("os").environ,
                    **env,
                    "PYTHONPATH": str(project),
                    "PATH": f"{sys.executable.rsplit('/', 1)[0]}:/usr/bin:/bin",
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            wait_for_s3_checkpoint(env, process)
            cluster.kill_node("second")  # a machine that goes away mid-training ...
            cluster.add_node("fourth", 3, hidden=True)  # ... and a fresh one, with nothing of the driver's
            output, _ = process.communicate(timeout=900)
            (tmp_path / "pipeline.log").write_text(output)  # the whole log, for a failure below
            assert process.returncode == 0, output[-6000:]
        finally:
            cluster.stop()
        for stage in ("train", "evaluate", "register"):
            assert f"Running stage '{stage}'" in output
        assert re.search(r"avs train: resuming after epoch \d", output), f"no resume in {tmp_path / 'pipeline.log'}"
        train = json.loads((project / "metrics/train.json").read_text())
        assert train["epoch"] == 2 and train["workers_nodes"] == 2.0 and train["workers_in_sync"] == 1.0
        history = (project / "metrics/train_history.csv").read_text().splitlines()[1:]
        assert [int(float(row.split(",")[0])) for row in history] == [0, 1, 2]  # no completed epoch lost
        assert any(key.startswith("shards/stamps-") and key.endswith(".parquet") for key in s3_keys(env, "shards/"))

        uri = env["MLFLOW_TRACKING_URI"]
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        (version,) = client.search_model_versions("name='avs-stamps'")
        assert "test_J" in version.tags
        run = client.get_run(version.run_id)
        assert "test/J" in run.data.metrics and "val/J" in run.data.metrics  # training and evaluation in one run
        # every epoch logged; one trained again after the loss (its checkpoint not yet stored) is logged twice
        assert {m.step for m in client.get_metric_history(run.info.run_id, "val/J")} == {0, 1, 2}
        promote = subprocess.run(
            [sys.executable, "-m", "avs.cli", "promote"],
            cwd=project,
            capture_output=True,
            text=True,
            env={**env, "PATH": f"{sys.executable.rsplit('/', 1)[0]}:/usr/bin:/bin", "PYTHONPATH": str(project)},
        )
        assert promote.returncode == 0 and "promoted to @champion" in promote.stdout, promote.stdout + promote.stderr
        endpoints = (env["AWS_ENDPOINT_URL"], uri)
    assert not any(listening(url) for url in endpoints), "the stand-in left a server running"


def test_a_cluster_run_with_a_local_tracking_store_stops_at_once(tmp_path, stamps_repo):
    """Rank 0 may land on a node without the driver's sqlite file: the stage refuses before training."""
    import os

    standin = load_standin()
    (tmp_path / "standin").mkdir()
    cluster = standin.RayCluster(tmp_path / "standin", {})
    try:
        cluster.start_head(1)
        cluster.add_node("second", 1)
        code = (
            "import sys; from pathlib import Path; from avs.config import config_from_dict; "
            "from avs.train.run import train; "
            "train(config_from_dict({'model': {'backbone_weights': None}, 'train': {'tracking_uri': sys.argv[1]}}), "
            "Path(sys.argv[2]), progress=False)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, f"sqlite:///{tmp_path / 'mlflow.db'}", str(stamps_repo)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **cluster.environment()},
        )
    finally:
        cluster.stop()
    assert done.returncode != 0
    assert "train.tracking_uri: sqlite:///" in done.stderr and "the Ray cluster has 2 nodes" in done.stderr, done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was opened before the check


LOOK_ON_NODES = """
import json, sys
from pathlib import Path
import ray

def look(root):
    root = Path(root)
    return {"code": (root / "avs" / "marker.py").is_file(), "shards": (root / "data" / "shards").exists(),
            "mlflow.db": (root / "mlflow.db").exists()}

ray.init(log_to_driver=False)
print(json.dumps({node: ray.get(ray.remote(look).options(resources={f"avs_{node}": 1}).remote(sys.argv[1]))
                  for node in sys.argv[2:]}))
"""


def test_a_hidden_node_sees_the_code_but_none_of_the_drivers_files(tmp_path):
    """The isolation the cluster tests rely on: a path that exists only on the driver is missing on
    a hidden node, as on a real cluster whose nodes share nothing but object storage; a killed node
    is replaced by a fresh hidden one."""
    import os

    standin = load_standin()
    project = tmp_path / "project"
    (project / "avs").mkdir(parents=True)
    (project / "avs" / "marker.py").write_text("CODE = 1\n")
    (project / "data" / "shards").mkdir(parents=True)
    (project / "data" / "shards" / "part-00000.parquet").write_bytes(b"driver only")
    (project / "mlflow.db").write_bytes(b"driver only")
    (tmp_path / "standin").mkdir()

    def look(*nodes: str) -> dict[str, dict[str, bool]]:
        done = subprocess.run(
            [sys.executable, "-c", LOOK_ON_NODES, str(project), *nodes],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **cluster.environment()},
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    hidden = {"code": True, "shards": False, "mlflow.db": False}
    cluster = standin.RayCluster(tmp_path / "standin", {}, hide=project)
    try:
        cluster.start_head(1)
        cluster.add_node("second", 1, hidden=True)
        assert look("head", "second") == {"head": {"code": True, "shards": True, "mlflow.db": True}, "second": hidden}
        cluster.kill_node("second")  # a machine that goes away, and a fresh one in its place
        cluster.add_node("third", 1, hidden=True)
        assert look("third") == {"third": hidden}
    finally:
        cluster.stop()
    assert (project / "data" / "shards" / "part-00000.parquet").read_bytes() == b"driver only"  # untouched
    assert not [
        p
        for p in __import__("psutil").process_iter(["cmdline"])
        if "avs-standin-ray" in " ".join(p.info["cmdline"] or ())
    ], "the stand-in left Ray processes"
