"""A local stand-in for the cluster, all real processes on 127.0.0.1, for tests and for trying infra/.

    python infra/local/standin.py shell          start everything, print the environment, wait for Ctrl-C
    python infra/local/standin.py run -- CMD...  start everything, run CMD in that environment, stop

It starts
  - an S3-compatible object store (moto's server) with a bucket `avs`: the DVC remote
    (s3://avs/dvc) and Ray Train's storage_path (s3://avs/ray);
  - an MLflow tracking server (SQLite + local artifacts, `avs.track.server`);
  - a two-node Ray cluster: `ray start --head` and a second `ray start --address`, each with its
    own custom resource (`avs_head`, `avs_second`), its own node label (`avs-node=head`,
    `avs-node=second`) and a shared authentication token. With `hide=PROJECT` the second node
    runs in its own mount namespace (`unshare -m`, as root) where PROJECT is an empty tmpfs with
    only its code (`avs/`, and `.venv/` if it is there) mounted back: like a node of a real
    cluster, it shares no data, models, caches or local databases with the driver.
The S3 and MLflow servers listen on 127.0.0.1 only (the test checks it). Ray 2.60's processes do
not all follow `--node-ip-address 127.0.0.1`: measured, its client server also listens on the
machine's address and some core-worker gRPC ports on all interfaces; on a shared machine, keep
them behind a firewall. Everything is stopped on exit, also when a step fails; only the stand-in's
own Ray processes are stopped (found by its session folder), so another Ray instance on the
machine keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from avs.track.server import stop_server, wait_until_answers

BUCKET = "avs"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@contextlib.contextmanager
def object_store(root: Path) -> Iterator[dict[str, str]]:
    """moto's S3 server on loopback with bucket `avs`; yields the AWS_* environment for clients."""
    import boto3

    port = free_port()
    log = open(root / "s3.log", "ab")
    process = subprocess.Popen(
        [_bin("moto_server"), "-H", HOST, "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://{HOST}:{port}",
        "AWS_ACCESS_KEY_ID": "standin",
        "AWS_SECRET_ACCESS_KEY": "standin-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    try:
        wait_until_answers(env["AWS_ENDPOINT_URL"], process, "the S3 server", timeout_s=60)
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="standin",
            aws_secret_access_key="standin-secret",
        ).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        stop_server(process)


@contextlib.contextmanager
def tracking_server(root: Path) -> Iterator[dict[str, str]]:
    from avs.track.server import start_server

    port = free_port()
    process = start_server(root / "mlflow", port)
    try:
        yield {"MLFLOW_TRACKING_URI": f"http://{HOST}:{port}"}
    finally:
        stop_server(process)


# What a hidden node keeps of the project: the code it runs (the venv when it lives inside).
KEPT = ("avs", ".venv")


def isolated(command: Sequence[str], project: Path, keep: Sequence[str] = KEPT) -> list[str]:
    """`command` in a mount namespace of its own where `project` is an empty tmpfs except for
    `keep` (bind-mounted back): its processes, and the Ray workers they start, see none of the
    project's data. Needs root (CI runs as root)."""
    project = project.resolve()
    kept = [name for name in keep if (project / name).exists()]
    stash = f"/tmp/avs-standin-keep-{os.getpid()}-{secrets.token_hex(4)}"
    steps = [f"mkdir -p {stash}"]
    steps += [f"mkdir -p {stash}/{n} && mount --bind {shlex.quote(str(project / n))} {stash}/{n}" for n in kept]
    steps.append(f"mount -t tmpfs avs-hidden {shlex.quote(str(project))}")
    steps += [
        f"mkdir -p {shlex.quote(str(project / n))} && mount --move {stash}/{n} {shlex.quote(str(project / n))}"
        for n in kept
    ]
    steps.append("exec " + shlex.join(command))
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join(steps)]


class RayCluster:
    """A Ray cluster on loopback: a head node and worker nodes that can be added and killed.

    Every node gets a custom resource and a label of its name (`avs_<name>`, `avs-node=<name>`)
    and the cluster's token. A node started with `hidden=True` runs in its own mount namespace
    where the project is empty but for its code (`isolated`).
    """

    def __init__(self, root: Path, env: dict[str, str], hide: Path | None = None):
        token = root / "ray_auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.hide = hide
        self.port = str(free_port())
        self.nodes: dict[str, str] = {}  # name -> its own session folder
        self.address = f"{HOST}:{self.port}"

    def _start(self, name: str, cpus: int, hidden: bool, *args: str) -> None:
        # a short session folder per node (Unix socket paths are limited to ~100 characters), by
        # which `kill_node` finds exactly that node's processes
        temp_dir = tempfile.mkdtemp(prefix=f"avs-standin-ray-{name}-", dir="/tmp")
        command = [
            _bin("ray"),
            "start",
            *args,
            "--node-ip-address",
            HOST,
            "--num-cpus",
            str(cpus),
            "--disable-usage-stats",
            "--temp-dir",
            temp_dir,
            "--resources",
            f'{{"avs_{name}": 1}}',
            "--labels",
            f"avs-node={name}",
        ]
        if hidden:
            if self.hide is None:
                raise ValueError("a hidden node needs the project to hide (RayCluster(hide=...))")
            command = isolated(command, self.hide)
        self.nodes[name] = temp_dir
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, **self.env})
        if done.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start_head(self, cpus: int) -> None:
        self._start("head", cpus, False, "--head", "--port", self.port, "--include-dashboard", "false")

    def add_node(self, name: str, cpus: int, hidden: bool = False) -> None:
        self._start(name, cpus, hidden, "--address", self.address)

    def kill_node(self, name: str) -> None:
        """Kill a node's processes at once (SIGKILL), as a machine that goes away."""
        stop_ray_processes(self.nodes.pop(name), timeout_s=0.0)

    def stop(self) -> None:
        for name in [n for n in self.nodes if n != "head"] + [n for n in self.nodes if n == "head"]:
            stop_ray_processes(self.nodes.pop(name))

    def environment(self) -> dict[str, str]:
        return {**self.env, "RAY_ADDRESS": self.address}


@contextlib.contextmanager
def ray_cluster(
    root: Path, env: dict[str, str], cpus_per_node: int = 3, hide: Path | None = None, head_cpus: int | None = None
) -> Iterator[dict[str, str]]:
    """A head and a second node on loopback, sharing a token; yields RAY_ADDRESS and the auth settings.

    With `hide`, the second node cannot see that project's files (`isolated`); `head_cpus`
    (default `cpus_per_node`) of 0 keeps every task and worker off the driver's node.
    """
    cluster = RayCluster(root, env, hide)
    try:
        cluster.start_head(cpus_per_node if head_cpus is None else head_cpus)
        cluster.add_node("second", cpus_per_node, hidden=hide is not None)
        yield cluster.environment()
    finally:
        cluster.stop()


def stop_ray_processes(temp_dir: str, timeout_s: float = 30.0) -> None:
    """Stop this stand-in's Ray processes, and only them: those whose command line names its session
    folder, with their children (`ray stop` would stop every Ray process of the user)."""
    import psutil

    own = set()
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if temp_dir in " ".join(process.info["cmdline"] or ()):
                own |= {process, *process.children(recursive=True)}
    for process in own:
        with contextlib.suppress(psutil.Error):
            process.terminate() if timeout_s > 0 else process.kill()
    _, alive = psutil.wait_procs(list(own), timeout=max(timeout_s, 5.0))
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


@contextlib.contextmanager
def local_stack(root: Path, hide: Path | None = None) -> Iterator[dict[str, str]]:
    """Object store, tracking server and two-node Ray cluster; yields the environment to run in.

    The Ray nodes get the object store's settings in their environment, so workers on either
    node read and write `s3://avs/...` checkpoints. With `hide`, the second node does not see
    that project's files.
    """
    root.mkdir(parents=True, exist_ok=True)
    with object_store(root) as s3, tracking_server(root) as mlflow, ray_cluster(root, s3, hide=hide) as ray:
        yield {**s3, **mlflow, **ray}


def configure_dvc_remote(project: Path, env: dict[str, str]) -> None:
    """Make s3://avs/dvc on the stand-in store the project's default DVC remote (secrets in config.local)."""
    dvc = _bin("dvc")
    steps = [
        ["remote", "add", "--default", "--force", "standin", f"s3://{BUCKET}/dvc"],
        ["remote", "modify", "--local", "standin", "endpointurl", env["AWS_ENDPOINT_URL"]],
        ["remote", "modify", "--local", "standin", "access_key_id", env["AWS_ACCESS_KEY_ID"]],
        ["remote", "modify", "--local", "standin", "secret_access_key", env["AWS_SECRET_ACCESS_KEY"]],
    ]
    for args in steps:
        subprocess.run([dvc, *args], cwd=project, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["shell", "run"])
    parser.add_argument("command", nargs="*", help="run: the command (after --)")
    parser.add_argument("--root", type=Path, default=Path(".standin"), help="state folder (logs, databases)")
    parser.add_argument("--hide", type=Path, help="a project the second node must not see (its code stays): needs root")
    args = parser.parse_args()
    with local_stack(args.root, hide=args.hide) as env:
        if args.mode == "run":
            if not args.command:
                parser.error("run needs a command after --")
            return subprocess.call(args.command, env={**os.environ, **env})
        print("The stand-in is up. In another shell:")
        for key, value in env.items():
            print(f"  export {key}={value}")
        print(
            "then run the pipeline there, e.g. `avs --set train.storage_path=s3://avs/ray train`. "
            "Ctrl-C here stops everything."
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
