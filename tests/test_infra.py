"""infra/: the manifests parse, name what they must, run commands that exist, and ask for the
resources the params need."""

from __future__ import annotations

import re
import shlex
from importlib.metadata import version

import pytest
import yaml

from avs.cli import build_parser
from avs.config import load_config
from tests.conftest import REPO

INFRA = REPO / "infra"


def load(path: str) -> dict:
    return yaml.safe_load((INFRA / path).read_text())


def avs_commands(entrypoint: str) -> list[list[str]]:
    """The `avs ...` commands of a shell command line (split at && and ;)."""
    return [shlex.split(part)[1:] for part in re.split(r"&&|;", entrypoint) if shlex.split(part)[:1] == ["avs"]]


def dvc_stages(entrypoint: str) -> list[str]:
    stages = []
    for part in re.split(r"&&|;", entrypoint):
        words = shlex.split(part)
        if words[:2] in (["dvc", "pull"], ["dvc", "repro"]):
            stages += [w for w in words[2:] if not w.startswith("-")]
    return stages


def container(template: dict) -> dict:
    (only,) = template["spec"]["containers"]
    return only


def test_rayjob_runs_an_existing_command_with_matching_resources():
    job = load("ray/rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    commands = avs_commands(spec["entrypoint"])
    assert commands, "the RayJob must run an avs command"
    known_stages = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert set(dvc_stages(spec["entrypoint"])) <= known_stages
    parsed = [build_parser().parse_args(argv) for argv in commands]  # exits on an unknown command or option
    # train, then evaluate and register, so that the model ends in the registry, not on a pod
    assert [args.command for args in parsed] == ["train", "evaluate", "register"]
    for args in parsed[:1]:
        cfg = load_config(REPO / "params.yaml", args.set)  # the overrides are valid params
        cluster = spec["rayClusterSpec"]
        (workers,) = cluster["workerGroupSpecs"]
        resources = container(workers["template"])["resources"]["requests"]
        assert workers["replicas"] == workers["minReplicas"] >= cfg.train.num_workers
        assert int(resources["cpu"]) >= cfg.train.cpus_per_worker + 1  # one CPU left for Ray Data at least
        assert int(resources.get("nvidia.com/gpu", 0)) == (1 if cfg.train.use_gpu else 0)
        assert "://" in cfg.train.storage_path, "checkpoints must go to storage every node sees"
        assert ray_image(cluster) == ray_image({"headGroupSpec": cluster["headGroupSpec"], "workerGroupSpecs": []})


def ray_image(cluster: dict) -> str:
    images = {container(cluster["headGroupSpec"]["template"])["image"]}
    images |= {container(group["template"])["image"] for group in cluster["workerGroupSpecs"]}
    (image,) = images  # every node runs the same image
    return image


def test_raycluster_has_a_head_and_an_autoscaling_gpu_group():
    cluster = load("ray/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    spec = cluster["spec"]
    assert spec["rayVersion"] == version("ray") and spec["enableInTreeAutoscaling"] is True
    ray_image(spec)
    head_ports = {p["containerPort"] for p in container(spec["headGroupSpec"]["template"])["ports"]}
    assert {6379, 8265, 10001} <= head_ports
    (gpu,) = spec["workerGroupSpecs"]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    worker = container(gpu["template"])
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"] for e in worker.get("env", [])}
    assert "MLFLOW_TRACKING_URI" in env


def test_cluster_launcher_yaml():
    launcher = load("ray/cluster-aws.yaml")
    for key in ("cluster_name", "max_workers", "provider", "available_node_types", "head_node_type", "docker"):
        assert key in launcher, key
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    assert max(t.get("max_workers", 0) for t in types.values()) <= launcher["max_workers"]
    assert any("ray start --head" in c for c in launcher["head_start_ray_commands"])


def test_images_pin_the_versions_the_project_uses():
    ray_docker = (INFRA / "ray/Dockerfile").read_text()
    assert f"rayproject/ray:{version('ray')}-py311" in ray_docker and "constraints.txt" in ray_docker
    assert f"mlflow=={version('mlflow')}" in (INFRA / "mlflow/Dockerfile").read_text()


def test_mlflow_compose_uses_postgres_and_s3_artifacts():
    compose = load("mlflow/compose.yaml")
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    command = services["mlflow"]["command"]
    assert "--backend-store-uri postgresql://" in command and "--artifacts-destination s3://" in command
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio:")


@pytest.mark.parametrize("path", sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.yaml")))
def test_every_manifest_marks_what_a_user_must_change(path):
    assert "CHANGE" in (INFRA / path).read_text()


def _setup_requirement_files() -> dict[str, bool]:
    """The requirements files `make setup` installs, and whether with --no-deps."""
    lines = [line for line in (REPO / "Makefile").read_text().splitlines() if "pip install" in line and " -r " in line]
    return {line.split(" -r ")[1].split()[0]: "--no-deps" in line for line in lines}


def test_the_image_installs_what_setup_installs_and_leaves_local_state_out():
    dockerfile = (INFRA / "ray/Dockerfile").read_text()
    files = _setup_requirement_files()
    assert {"requirements.txt", "requirements-nodeps.txt"} <= set(files)
    installs = re.findall(r"pip install ([^\n&\\]+)", dockerfile)
    for name, no_deps in files.items():
        (line,) = [i for i in installs if f"-r {name}" in i.split(" -c")[0] or i.rstrip().endswith(f"-r {name}")]
        assert ("--no-deps" in line) == no_deps, (name, line)
        assert re.search(rf"COPY [^\n]*\b{re.escape(name)}\b", dockerfile), f"{name} is installed but never copied in"
    copies = re.findall(r"^COPY (.*)$", dockerfile, re.M)
    assert copies and all(c.startswith("--chown=ray:users ") for c in copies)  # the base image runs as `ray`
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "data", ".dvc/config.local", "mlflow.db", "models", ".cache"} <= ignored


def test_the_tracking_server_the_ray_manifests_name_exists_and_accepts_that_host():
    manifests = list(yaml.safe_load_all((INFRA / "mlflow/k8s.yaml").read_text()))
    services = {(m["metadata"]["name"], m["metadata"]["namespace"]) for m in manifests if m["kind"] == "Service"}
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    args = " ".join(container(deployment["spec"]["template"])["args"])
    allowed = set(re.search(r"--allowed-hosts=(\S+)", args).group(1).split(","))
    uris = set()
    for path in ("ray/raycluster.yaml", "ray/rayjob.yaml"):
        uris |= set(re.findall(r"MLFLOW_TRACKING_URI.*?value: \"?(http://[^\s\"}]+)", (INFRA / path).read_text(), re.S))
    assert uris
    for uri in uris:
        host_port = uri.removeprefix("http://").rstrip("/")
        name, namespace, *_ = host_port.split(":")[0].split(".")
        assert (name, namespace) in services, (
            f"{uri}: no Service {name} in namespace {namespace} in infra/mlflow/k8s.yaml"
        )
        assert host_port in allowed, f"{uri}: the server's --allowed-hosts does not include {host_port}"
    assert "--allowed-hosts" in load("mlflow/compose.yaml")["services"]["mlflow"]["command"]
    assert "MLFLOW_TRACKING_URI=http://" in " ".join(load("ray/cluster-aws.yaml")["docker"]["run_options"])
