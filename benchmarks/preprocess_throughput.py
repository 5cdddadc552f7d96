"""Preprocess throughput: clips/s and MB/s of shards written, with 1 and 2 worker processes.

Reads the embedded dataset built by the fetch stage (data/raw/stamps; run `make repro` first),
shards it into a scratch folder, and writes benchmarks/results/preprocess_throughput.{json,md}.
Both runs happen in one process on the same machine, so their ratio is meaningful.

    python benchmarks/preprocess_throughput.py [--workers 1 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from avs.config import load_config
from avs.data.preprocess import preprocess_source
from avs.data.sources import open_source
from avs.paths import raw_dir

RESULTS = Path(__file__).parent / "results"


def measure(source, cfg, workers: int, repeats: int) -> dict:
    best = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            manifest = preprocess_source(
                source, Path(scratch) / "shards", replace(cfg, num_workers=workers), progress=False
            )
            seconds = time.perf_counter() - start
        if best is None or seconds < best["seconds"]:
            best = {
                "workers": workers,
                "seconds": round(seconds, 2),
                "clips": manifest["clips"],
                "shard_mb": round(manifest["bytes"] / 1e6, 1),
            }
    best["clips_per_s"] = round(best["clips"] / best["seconds"], 1)
    best["shard_mb_per_s"] = round(best["shard_mb"] / best["seconds"], 2)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config(args.params)
    source = open_source(cfg.data, raw_dir(cfg))
    runs = [measure(source, cfg.preprocess, w, args.repeats) for w in args.workers]
    result = {
        "benchmark": "preprocess_throughput",
        "dataset": source.name,
        "image_size": cfg.preprocess.image_size,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "runs": runs,
        "speedup": {
            f"{r['workers']}_vs_{runs[0]['workers']}": round(runs[0]["seconds"] / r["seconds"], 2) for r in runs
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "preprocess_throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Preprocess throughput ({source.name}, {result['machine']['cpus']} CPUs, best of {args.repeats})",
        "",
        "| workers | clips | seconds | clips/s | shard MB | MB/s | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['workers']} | {run['clips']} | {run['seconds']} | {run['clips_per_s']} | {run['shard_mb']} "
            f"| {run['shard_mb_per_s']} | {runs[0]['seconds'] / run['seconds']:.2f}x |"
        )
    (RESULTS / "preprocess_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
