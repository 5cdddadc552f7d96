"""Does the model use the audio? Against an audio-blind model of the same architecture and budget.

The audio-blind model is the whole `dvc repro` with `train.target=visible`: the same model,
data, augmentation, epochs and test-time settings, but trained to segment every visible object,
sounding or not, so that what it hears cannot change what it should draw. Both are scored on the
test split against the sounding objects, next to the reference the `evaluate` stage reports:
every visible object drawn perfectly from the ground truth (the ceiling of any audio-blind
model). Runs one DVC experiment outside the workspace (`dvc exp run --temp`, about 12 minutes
on 2 CPU cores); the audio-guided model is the workspace's own `dvc repro` result. Writes
benchmarks/results/visual_baseline.md.

    python benchmarks/visual_baseline.py [--skip-run]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ablation import dvc, evaluations, lookup, training_budget  # benchmarks/ablation.py: the same experiment plumbing

NAME = "visual-baseline"
OVERRIDES = ["train.target=visible"]
ROWS = [  # (header, path in metrics/evaluate.json)
    ("test J", ("test", "J")), ("s4 J", ("test", "s4_J")), ("ms3 J", ("test", "ms3_J")), ("hard J", ("test", "hard_J")),
    ("ms3 J, mixed frames", ("attribution", "ms3_mixed_J")), ("hard J, mixed frames", ("attribution", "hard_mixed_J")),
    ("pick ms3", ("attribution", "ms3_pick_rate")), ("pick hard", ("attribution", "hard_pick_rate")),
    ("silent object marked, ms3", ("attribution", "ms3_silent_covered")),
    ("silent object marked, hard", ("attribution", "hard_silent_covered")),
    ("swapped J", ("robustness", "swapped_J")), ("muted J", ("robustness", "muted_J")),
]
PERFECT = {  # the reference's number for a row, in the audio-guided model's evaluate.json
    "test J": ("robustness", "visual_only_clean_J"), "s4 J": ("robustness", "visual_only_clean_s4_J"),
    "ms3 J": ("robustness", "visual_only_clean_ms3_J"), "hard J": ("robustness", "visual_only_clean_hard_J"),
    "ms3 J, mixed frames": ("attribution", "ms3_mixed_union_J"),
    "hard J, mixed frames": ("attribution", "hard_mixed_union_J"),
    "muted J": ("robustness", "visual_only_muted_J")}


def table(model: dict, blind: dict) -> list[str]:
    lines = ["| | audio-guided model | audio-blind model | every visible object, drawn perfectly |", "|---|---|---|---|"]
    for header, path in ROWS:
        perfect = lookup(model, PERFECT[header]) if header in PERFECT else None
        cells = [lookup(model, path), lookup(blind, path), perfect]
        lines.append(f"| {header} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-run", action="store_true", help="only tabulate an experiment that already ran")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/visual_baseline.md"))
    args = parser.parse_args()
    if not args.skip_run:
        subprocess.run([str(Path(sys.executable).with_name("dvc")), "exp", "remove", NAME], capture_output=True)
        print(f"visual baseline: running {NAME} ({' '.join(OVERRIDES)})", flush=True)
        dvc("exp", "run", "--temp", "-n", NAME, *[a for o in OVERRIDES for a in ("-S", o)])
    found = evaluations(json.loads(dvc("exp", "show", "--json", "--no-fetch", "--all-commits")))
    if "workspace" not in found or NAME not in found:
        raise SystemExit(f"no evaluation found for {'the workspace' if 'workspace' not in found else NAME}: "
                         "run `dvc repro` (and this script without --skip-run) first")
    model, blind = found["workspace"], found[NAME]
    protocol = model.get("protocol", {})
    lines = ["# Audio-guided against audio-blind (test split)", "",
             "Made by `python benchmarks/visual_baseline.py`: the audio-blind model is the whole `dvc repro` with",
             f"`{' '.join(OVERRIDES)}` (trained to segment every visible object); everything else is the defaults.",
             f"2-core CPU, {training_budget()}, evaluated at {protocol.get('image_size', '?')} px"
             + (" with mirror averaging" if protocol.get("flip") else "")
             + (f" and a {protocol['guided_kernel']} px guided filter" if protocol.get("guided_kernel") else "")
             + ". One run each.", "",
             *table(model, blind), "",
             "J is scored against the sounding objects. Mixed frames: a sounding and a silent object in view;",
             "there the perfectly drawn visible union scores only the sounding share of what it draws, and a model",
             "beats it only by leaving the silent object out. pick: in mixed frames, the share where the sounding",
             "one gets the higher mean probability (0.5: no preference). silent object marked: the share of its",
             "pixels predicted as sounding (p > 0.5), mean over mixed frames.",
             "swapped J: another clip's audio (lower = follows the audio); muted J: the truth is empty when the",
             "audio is muted (1 = predicts nothing)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
