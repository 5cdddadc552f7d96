"""The paper's ablation on the embedded set: baseline, +AMA, +UE and full, from one code path.

Runs three DVC experiments outside the workspace (`dvc exp run --temp`), each the whole
pipeline with the switches below; the full model is the workspace's own `dvc repro` result.
Then writes their test metrics to benchmarks/results/ablation.md. About 13 minutes per variant
on 2 CPU cores. Run from the repository root: `make ablation` (or `python benchmarks/ablation.py`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from avs.config import load_config

VARIANTS = {  # name -> `dvc exp run -S` overrides
    "baseline": ["model.ama.enabled=false", "model.ue.enabled=false", "loss.lambda_cst=0"],
    "ama": ["model.ue.enabled=false"],
    "ue": ["model.ama.enabled=false", "loss.lambda_cst=0"],
}
COLUMNS = [  # (header, path in metrics/evaluate.json)
    ("test J", ("test", "J")), ("test F", ("test", "F")), ("ms3 J", ("test", "ms3_J")), ("hard J", ("test", "hard_J")),
    ("ECE", ("calibration", "final", "ece")), ("AUROC u", ("calibration", "final", "auroc_u")),
    ("muted J", ("robustness", "muted_J")), ("swapped J", ("robustness", "swapped_J")),
    ("0 dB J", ("robustness", "noise_0db_J")),
]


def dvc(*args: str) -> str:
    result = subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def evaluations(shown: list) -> dict[str, dict]:
    """name -> the metrics/evaluate.json content, for the workspace and every named experiment."""
    found = {}

    def visit(node, name=None):
        if isinstance(node, dict):
            metrics = (node.get("data") or {}).get("metrics", {}).get("metrics/evaluate.json", {}).get("data")
            label = node.get("name") or name or node.get("rev")
            if metrics and label:
                found.setdefault(label, metrics)
            for value in node.values():
                visit(value, label if "revs" in node else None)
        elif isinstance(node, list):
            for value in node:
                visit(value, name)

    visit(shown)
    return found


def training_budget(params: str = "params.yaml") -> str:
    """'N epochs at S px' from the current params, for the results' headers."""
    train = load_config(params).train
    return f"{train.epochs} epochs at {train.image_size} px"


def lookup(metrics: dict, path: tuple[str, ...]) -> float | None:
    """The number at `path` in an evaluate.json, or None when it is missing or NaN."""
    value = metrics
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and value == value else None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-runs", action="store_true", help="only tabulate experiments that already ran")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.md"))
    args = parser.parse_args()
    if not args.skip_runs:
        for name, overrides in VARIANTS.items():
            subprocess.run([str(Path(sys.executable).with_name("dvc")), "exp", "remove", name], capture_output=True)
            print(f"ablation: running {name} ({' '.join(overrides)})", flush=True)
            dvc("exp", "run", "--temp", "-n", name, *[a for o in overrides for a in ("-S", o)])
    # experiments hang off the commit they started from: look at every commit's
    found = evaluations(json.loads(dvc("exp", "show", "--json", "--no-fetch", "--all-commits")))
    rows = [("baseline", "baseline"), ("+AMA", "ama"), ("+UE", "ue"), ("full (AMA + UE)", "workspace")]
    lines = ["# Ablation on the embedded set (test split)", "",
             "Made by `make ablation` (benchmarks/ablation.py): each variant is the whole `dvc repro` with",
             f"the default params except the switches named; 2-core CPU, fp32, {training_budget()}.", "",
             "| variant | " + " | ".join(h for h, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, key in rows:
        metrics = found.get(key)
        if metrics is None:
            lines.append(f"| {label} | " + " | ".join("not run" for _ in COLUMNS) + " |")
            continue
        cells = [_cell(lookup(metrics, path)) for _, path in COLUMNS]  # None: NaN (no u) or missing
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Switches: baseline `" + " ".join(VARIANTS["baseline"]) + "`; +AMA `" + " ".join(VARIANTS["ama"])
              + "`; +UE `" + " ".join(VARIANTS["ue"]) + "`.",
              "muted J: the truth is empty with the audio muted (1 = predicts nothing). swapped J: scored against",
              "the clip's own truth with another clip's audio (lower = the model follows the audio)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
