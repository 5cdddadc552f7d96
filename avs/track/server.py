"""A local MLflow tracking server: `avs mlflow-server` (SQLite backend, local artifact store).

Bound to 127.0.0.1 only. Artifacts are served by the server itself (`--serve-artifacts`), so
clients need nothing but `MLFLOW_TRACKING_URI=http://127.0.0.1:<port>`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def server_command(root: Path, port: int) -> list[str]:
    root = Path(root).resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--workers",
        "1",
    ]


def start_server(root: Path, port: int, log: Path | None = None) -> subprocess.Popen:
    """Start the server in the background and wait until it answers; the caller stops it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = open(log or root / "server.log", "ab")
    process = subprocess.Popen(server_command(root, port), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_answers(f"http://{HOST}:{port}/health", process, "mlflow server", log=log or root / "server.log")
    except BaseException:
        stop_server(process)
        raise
    return process


def wait_until_answers(
    url: str, process: subprocess.Popen, what: str, timeout_s: float = 120.0, log: Path | None = None
) -> None:
    """Poll `url` until it answers with a 2xx status; fail early if `process` exits first."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}{see}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:  # not listening yet, or an error status (urllib raises for those)
            time.sleep(0.5)
    raise TimeoutError(f"{what} at {url} did not answer within {timeout_s:.0f} s{see}")


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, 15)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, 9)
            process.wait()


def serve(root: Path, port: int) -> int:
    """Run the server in the foreground until interrupted."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"MLflow tracking server on http://{HOST}:{port} (data in {root.resolve()}); "
        f"point the pipeline at it with: export MLFLOW_TRACKING_URI=http://{HOST}:{port}",
        flush=True,
    )
    try:
        return subprocess.call(server_command(root, port))
    except KeyboardInterrupt:
        return 0
