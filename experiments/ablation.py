"""The seeded ablation on the embedded set: baseline, +AMA, +UE, full (paper profile), full (ours).

Each (variant, seed) is a whole training and evaluation at the default budget with the switches
below and `train.seed` set, run by the `avs` command in its own scratch folder
(`.cache/ablation/<variant>-s<seed>/`: a copy of params.yaml, links to the workspace's shards
and weights, its own Ray storage and MLflow store), so it never touches the workspace's model.
Its result goes to `benchmarks/results/ablation/<variant>-s<seed>.json` with the run's name
(`avs.train.run.run_name`: params, shards and code); a result whose name still matches is kept
and not run again, so the table fills over several sittings. Then the table of mean +- std over
seeds and the paired difference full - baseline per seed go to benchmarks/results/ablation.md.

About 19 minutes per run on 2 CPU cores. Run from the repository root after `dvc repro`
(shards and weights): `make ablation`, or `python experiments/ablation.py --seeds 0 --variants paper`.
`--jobs 2` runs two at once, each with its own local Ray instance and a training worker on half the
cores (evaluation still uses them all); a failed run stops new ones from starting. Ray Train's
placement-group cleaner then logs "Found multiple active Ray instances" (it cannot tell which is
its own), which costs nothing while the runs finish.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from avs.config import load_config
from avs.data.preprocess import read_manifest
from avs.paths import shards_dir
from avs.train.run import run_name

VARIANTS = {  # name -> (label, `--set` overrides)
    "baseline": (
        "baseline (no AMA, no UE)",
        ["model.ama.enabled=false", "model.ue.enabled=false", "loss.lambda_cst=0"],
    ),
    "ama": ("+AMA", ["model.ue.enabled=false"]),
    "ue": ("+UE", ["model.ama.enabled=false", "loss.lambda_cst=0"]),
    "paper": ("full, paper profile", ["model.profile=paper"]),
    "ours": ("full, ours (additions)", ["model.profile=ours"]),
}
# The rows' common settings: the paper's parts are the only difference between baseline, +AMA,
# +UE and paper; ours adds the project's parts on top of paper.
COMMON = {"baseline": ["model.profile=paper"], "ama": ["model.profile=paper"], "ue": ["model.profile=paper"]}
SEEDS = (0, 1, 2)
COLUMNS = [  # (header, path in metrics/evaluate.json or train.json)
    ("test J", ("test", "J")),
    ("hard J", ("test", "hard_J")),
    ("ms3 J", ("test", "ms3_J")),
    ("transition J", ("test", "transition_J")),
    ("ECE", ("calibration", "final", "ece")),
    ("AUROC u", ("calibration", "final", "auroc_u")),
    ("muted J", ("robustness", "muted_J")),
    ("swapped J", ("robustness", "swapped_J")),
    ("r_p gap", ("train", "train_rp_gap")),
]
PAIRED = ("test J", "hard J", "transition J", "ECE")
SCRATCH = Path(".cache/ablation")
RESULTS = Path("benchmarks/results/ablation")
LINKED = ("data/shards", "data/weights", "data/raw")


def overrides(variant: str, seed: int) -> list[str]:
    return [*COMMON.get(variant, []), *VARIANTS[variant][1], f"train.seed={seed}"]


def expected_name(variant: str, seed: int, params: Path) -> str:
    """The training run's name for this (variant, seed): it changes with params, shards and code."""
    cfg = load_config(params, overrides(variant, seed))
    return run_name(cfg, read_manifest(shards_dir(cfg, Path("."))))


def run_one(variant: str, seed: int, params: Path, name: str, threads: int = 0) -> dict:
    """Train and evaluate in a scratch folder; returns {"name", "train", "evaluate", "seconds"}.

    `threads` > 0 caps the training worker's torch threads (`train.threads_per_worker`, a runtime
    setting: not part of the run's name), so that several runs can share the machine's cores.
    """
    root = SCRATCH / f"{variant}-s{seed}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    shutil.copy(params, root / "params.yaml")
    for linked in LINKED:
        if Path(linked).exists():
            (root / linked).symlink_to(Path(linked).resolve())
    avs = str(Path(sys.executable).with_name("avs"))
    runtime = [f"train.threads_per_worker={threads}"] if threads else []
    sets = [a for o in [*overrides(variant, seed), *runtime] for a in ("--set", o)]
    started = time.perf_counter()
    for command in ("train", "evaluate"):
        log = root / f"{command}.log"
        with log.open("w") as out:
            done = subprocess.run(
                [avs, "--no-progress", *sets, command],
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RAY_ADDRESS": ""},
            )
        if done.returncode != 0:
            raise SystemExit(
                f"ablation: {variant} seed {seed}: `avs {command}` failed; see {log}:\n"
                + "".join(log.read_text().splitlines(keepends=True)[-20:])
            )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "name": name,
        "commit": commit,
        "overrides": overrides(variant, seed),
        "seconds": round(time.perf_counter() - started),
        "train": json.loads((root / "metrics" / "train.json").read_text()),
        "evaluate": json.loads((root / "metrics" / "evaluate.json").read_text()),
    }


def lookup(result: dict, path: tuple[str, ...]) -> float | None:
    """The number at `path` (first part "train": train.json, else evaluate.json), or None when missing or NaN."""
    value = result["train"] if path[0] == "train" else result["evaluate"]
    for part in path[1:] if path[0] == "train" else path:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and value == value else None


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: dict[tuple[str, int], dict], budget: str) -> str:
    lines = [
        "# Seeded ablation on the embedded set (test split)",
        "",
        "Made by `make ablation` (experiments/ablation.py): each row is a whole training and evaluation",
        f"at the default params except its switches, {budget}, 2-core CPU, fp32; mean ± std over the",
        "seeds that have run (a row with fewer than 3 seeds says so).",
        "",
        "| variant | seeds | " + " | ".join(h for h, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for variant, (label, _) in VARIANTS.items():
        runs = [results[(variant, s)] for s in SEEDS if (variant, s) in results]
        cells = [mean_std([v for r in runs if (v := lookup(r, path)) is not None]) for _, path in COLUMNS]
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired difference per seed, full - baseline:",
        "",
        "| full | seed | " + " | ".join(f"Δ {h}" for h in PAIRED) + " |",
        "|---" * (len(PAIRED) + 2) + "|",
    ]
    paths = dict(COLUMNS)
    for full in ("paper", "ours"):
        for seed in SEEDS:
            if (full, seed) in results and ("baseline", seed) in results:
                a, b = results[(full, seed)], results[("baseline", seed)]
                diffs = [
                    (x - y)
                    if (x := lookup(a, paths[h])) is not None and (y := lookup(b, paths[h])) is not None
                    else None
                    for h in PAIRED
                ]
                lines.append(
                    f"| {full} | {seed} | " + " | ".join("-" if d is None else f"{d:+.3f}" for d in diffs) + " |"
                )
    switches = "; ".join(f"{label}: `{' '.join([*COMMON.get(v, []), *sets])}`" for v, (label, sets) in VARIANTS.items())
    lines += [
        "",
        f"Switches (plus `train.seed`): {switches}.",
        "muted J: the truth is empty with the audio muted (1 = predicts nothing). swapped J: scored against",
        "the clip's own truth with another clip's audio (lower = the model follows the audio). r_p gap:",
        "the last epoch's mean r_p of groups on sounding objects minus elsewhere (AMA rows only).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), choices=SEEDS)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--skip-runs", action="store_true", help="only tabulate the results that exist")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.md"))
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once, each with the machine's cores over JOBS torch threads; on CPU, 2 jobs of 1 thread "
        "finish more runs per hour than 1 of 2 (a worker's intra-op threads scale poorly at this size)",
    )
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs: {args.jobs}: at least 1 run at once")
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], dict] = {}
    names = {(v, s): expected_name(v, s, args.params) for v in VARIANTS for s in SEEDS}
    for (variant, seed), name in names.items():  # every kept result that still matches, for the table
        path = RESULTS / f"{variant}-s{seed}.json"
        if path.exists() and (kept := json.loads(path.read_text()))["name"] == name:
            results[(variant, seed)] = kept
    # seed-major: one seed of every row first, so a partial table still compares the rows
    todo = [(v, s) for s in args.seeds for v in args.variants if (v, s) not in results and not args.skip_runs]
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    written = threading.Lock()

    def run_and_keep(variant: str, seed: int) -> None:
        path, name = RESULTS / f"{variant}-s{seed}.json", names[(variant, seed)]
        print(f"ablation: {variant} seed {seed} ({' '.join(overrides(variant, seed))}), run {name}", flush=True)
        result = run_one(variant, seed, args.params, name, threads)
        with written:  # after every run: nothing lost on a stop
            results[(variant, seed)] = result
            path.write_text(json.dumps(result, indent=1) + "\n")
            args.out.write_text(table(results, budget(args.params)))
        print(f"ablation: {variant} seed {seed} done in {result['seconds']} s", flush=True)

    run_all(todo, args.jobs, run_and_keep)
    args.out.write_text(table(results, budget(args.params)))
    print(args.out.read_text())


def run_all(todo: list[tuple[str, int]], jobs: int, work: Callable[[str, int], None]) -> None:
    """`work(variant, seed)` for each of `todo`, `jobs` at a time, in order.

    The first failure cancels the runs not yet started and is raised once the running ones have
    finished (each keeps its result), as one run at a time stops at its first failure.
    """
    failed = threading.Event()

    def guarded(variant: str, seed: int) -> None:
        if failed.is_set():  # checked by the worker thread itself: a freed thread takes no new run
            return
        try:
            work(variant, seed)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in as_completed([pool.submit(guarded, variant, seed) for variant, seed in todo]):
            future.result()


def budget(params: Path) -> str:
    train = load_config(params).train
    return f"{train.epochs} epochs at {train.image_size} px"


if __name__ == "__main__":
    main()
