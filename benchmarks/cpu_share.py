"""Where the machine's cores go during a training epoch of the `train` stage, by kind of process.

Runs the real `train` stage (`python -m avs.cli train`, 2 epochs, one thread per Ray Train
worker, in the scratch repository `data_throughput.py` times it in), once per worker count, and
reads every process's CPU time from /proc (Linux) when rank 0 logs the end of epoch 0 and again
at the end of epoch 1: the window is the second epoch (training steps, validation, checkpoint).
Each process is put in one of these groups by its command line:

  training workers   the Ray Train workers (`ray::RayTrainWorker`)
  Ray task workers   Ray's pooled worker processes, which run Ray Data's read, shuffle and
                     decode tasks (named `ray::IDLE` between tasks)
  Ray Data executors the `SplitCoordinator` actors that run each dataset's streaming executor
  Ray services       raylet, GCS, dashboard and its agents, Ray Train's controller and Ray's
                     other actors and monitors
  driver             the `avs train` process itself
  other              everything else on the machine (the kernel's threads, the sandbox)

and what no process used is `idle` (a process that starts and exits inside the window is not seen,
so its time counts as idle; Ray Data's pooled workers live for the whole run). The largest Ray
services are listed by name. Answers why 2 workers fall short of twice one on a small
machine (issue 4 asks for 1.7x): what the workers get, and what Ray and Ray Data take beside them.
Writes benchmarks/results/cpu_share.{json,md}.

    python benchmarks/cpu_share.py [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data_throughput import scratch_training  # benchmarks/data_throughput.py
from model_cost import write_results  # benchmarks/model_cost.py

from avs.config import Config, load_config
from avs.data.stream import shard_files
from avs.paths import shards_dir

GROUPS = ("training workers", "Ray task workers", "Ray Data executors", "Ray services", "driver", "other", "idle")
EPOCH_LINE = re.compile(r"avs train: epoch (\d+) \(.*, ([\d.]+) clips/s, (\d+) s")


def cpu_seconds() -> dict[int, tuple[float, str]]:
    """Every live process's user + system CPU seconds and command line (its name if it has none)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # exited while we looked
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # utime and stime are fields 14 and 15 of stat(5)
        found[int(entry)] = (
            (int(fields[11]) + int(fields[12])) / ticks,
            command or stat[stat.find("(") + 1 : stat.rfind(")")],
        )
    return found


def group_of(command: str, driver_pid: int, pid: int) -> str:
    if pid == driver_pid:
        return "driver"
    if command.startswith("ray::RayTrainWorker"):
        return "training workers"
    if command.startswith("ray::SplitCoordinator"):
        return "Ray Data executors"
    if command.startswith(("ray::IDLE", "ray::ReadParquet", "ray::MapBatches", "ray::RandomShuffle", "ray::_shuffle")):
        return "Ray task workers"
    if command.startswith("ray::") or "/ray/" in command or command.startswith(("ray-", "gcs_server", "raylet")):
        return "Ray services"
    return "other"


def short_name(command: str) -> str:
    """`ray::Name`, a program's file name, or for Python the script or module it runs."""
    words = command.split()
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0]
    program = Path(words[0]).name
    if program.startswith("python"):
        for index, word in enumerate(words[1:], 1):
            if word == "-m" and index + 1 < len(words):
                return words[index + 1]
            if word.endswith(".py"):
                return Path(word).name
    return program


def epoch_window(cfg: Config, workers: int, repo: Path, params: Path, scratch: Path) -> dict:
    """Run the train stage with `workers` one-thread workers (its output echoed); CPU seconds per
    group over epoch 1."""
    scratch_repo, settings = scratch_training(cfg, repo, workers, scratch)
    command = [
        sys.executable,
        "-m",
        "avs.cli",
        "--params",
        str(params),
        "--no-progress",
        *[a for k, v in settings.items() for a in ("--set", f"train.{k}={v}")],
        "train",
    ]
    process = subprocess.Popen(
        command,
        cwd=scratch_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    start = end = None
    epoch = {}
    for line in process.stdout:
        print(line, end="", flush=True)
        match = EPOCH_LINE.search(line)
        if match and match[1] == "0":
            start = (time.perf_counter(), cpu_seconds())
        elif match and match[1] == "1":
            end = (time.perf_counter(), cpu_seconds())
            epoch = {"clips_per_s": float(match[2]), "seconds": float(match[3])}
    if process.wait() != 0 or start is None or end is None:
        raise RuntimeError(
            f"the train stage with {workers} workers failed or logged no epochs (its output is above): "
            f"{' '.join(command)}"
        )
    wall = end[0] - start[0]
    used = dict.fromkeys(GROUPS, 0.0)
    services: dict[str, float] = {}
    for pid, (seconds, name) in end[1].items():
        spent = seconds - start[1].get(pid, (0.0, ""))[0]
        group = group_of(name, process.pid, pid)
        used[group] += spent
        if group == "Ray services":
            service = short_name(name)
            services[service] = services.get(service, 0.0) + spent
    used["idle"] = max(0.0, wall * os.cpu_count() - sum(used.values()))
    largest = dict(sorted(((n, s / wall) for n, s in services.items()), key=lambda item: -item[1])[:6])
    return {
        "workers": workers,
        "window_s": wall,
        **epoch,
        "cores": {g: s / wall for g, s in used.items()},
        "largest_ray_services": largest,
    }


def render(runs: list[dict]) -> str:
    cores = os.cpu_count()
    lines = [
        f"# Where the cores go in the train stage's second epoch ({cores} CPUs, one thread per worker, one run)",
        "",
        "Cores used on average over the epoch (training, validation, checkpoint); "
        "the columns sum to the machine's cores.",
        "",
        "| group | " + " | ".join(f"{r['workers']} worker(s)" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for group in GROUPS:
        lines.append(f"| {group} | " + " | ".join(f"{r['cores'][group]:.2f}" for r in runs) + " |")
    lines.append(
        "| clips/s (the epoch's, as the loop reports it) | "
        + " | ".join(f"{r['clips_per_s']:.2f}" for r in runs)
        + " |"
    )
    lines.append("| epoch seconds (with validation) | " + " | ".join(f"{r['seconds']:.0f}" for r in runs) + " |")
    if len(runs) == 2 and runs[0]["workers"] == 1 and runs[1]["workers"] == 2:
        one, two = runs
        lines += [
            "",
            f"2 workers / 1 worker: {two['clips_per_s'] / one['clips_per_s']:.2f}x the clips/s; "
            f"each of the 2 workers got {two['cores']['training workers'] / 2:.2f} cores, "
            f"the single worker {one['cores']['training workers']:.2f}.",
        ]
    for run in runs:
        named = ", ".join(f"{name} {cores:.3f}" for name, cores in run["largest_ray_services"].items())
        lines += ["", f"Largest Ray services with {run['workers']} worker(s), cores: {named}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    repo = Path(".").resolve()
    params = Path(args.params).resolve()
    cfg = load_config(params)
    shard_files(shards_dir(cfg, repo), "train")  # a clear error now if the shards are missing (`dvc repro preprocess`)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for workers in args.workers:
            print(f"train stage, {workers} worker(s) ...", flush=True)
            runs.append(epoch_window(cfg, workers, repo, params, Path(scratch)))
    write_results("cpu_share", {"cpus": os.cpu_count(), "runs": runs}, render(runs), "cpu", False)


if __name__ == "__main__":
    main()
