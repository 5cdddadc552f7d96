"""DPC-KNN cost against the number of tokens N (CPU), batched over B*T frames.

Stage sizes at 224 px: N = 56*56 (stride 4), 28*28, 14*14, 7*7. Each row times DPC-KNN on all
N tokens and the model's grouping (`avs.model.ama.group_tokens`), which finds the centres on a
pooled copy when N exceeds `model.ama.grouping_tokens` (196). Writes
benchmarks/results/dpc_knn_cost.{json,md}; all rows come from one run on one machine.

    python benchmarks/dpc_knn_cost.py [--frames 10] [--channels 64] [--groups 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from avs.model.ama import group_tokens
from avs.model.dpc_knn import dpc_knn

RESULTS = Path(__file__).parent / "results"


def time_once(function, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="B*T frames per call (2 clips of 5)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grouping-tokens", type=int, default=196, help="model.ama.grouping_tokens")
    args = parser.parse_args()
    rows = []
    for side in (7, 14, 28, 56):
        tokens = torch.randn(args.frames, side * side, args.channels)
        seconds = time_once(lambda: dpc_knn(tokens, args.groups), args.repeats)
        pooled = time_once(
            lambda: group_tokens(tokens, (side, side), args.groups, 5, args.grouping_tokens), args.repeats
        )
        rows.append(
            {
                "grid": f"{side}x{side}",
                "tokens": side * side,
                "ms_per_call": round(seconds * 1e3, 2),
                "ms_per_frame": round(seconds * 1e3 / args.frames, 3),
                "model_grouping_ms_per_frame": round(pooled * 1e3 / args.frames, 3),
            }
        )
    result = {
        "benchmark": "dpc_knn_cost",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        **vars(args),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dpc_knn_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# DPC-KNN cost (CPU, {torch.get_num_threads()} threads, {args.frames} frames per call, "
        f"C={args.channels}, P={args.groups})",
        "",
        f"Model grouping: centres on a pooled copy of at most {args.grouping_tokens} tokens, then every token "
        "joins its nearest centre.",
        "",
        "| grid | N | DPC-KNN ms per call | DPC-KNN ms per frame | model grouping ms per frame |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['grid']} | {r['tokens']} | {r['ms_per_call']} | {r['ms_per_frame']} | "
        f"{r['model_grouping_ms_per_frame']} |"
        for r in rows
    ]
    (RESULTS / "dpc_knn_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
