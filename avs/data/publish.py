"""Publish the local shard folder where every node of a cluster can read it (`train.shards_uri`).

DVC keeps the shards in its own cache layout, which Ray cannot read; a cluster's nodes share
nothing but object storage. So the `train` stage copies the plain Parquet files and the manifest
to `<shards_uri>/<dataset>-<manifest digest>/` (s3://, any pyarrow filesystem, or a shared mount)
and hands Ray Data those URIs. The digest names exactly these shards: a folder that is there
already is complete (its manifest is written last) and is not copied again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from avs.data.errors import DataError
from avs.data.preprocess import MANIFEST, read_manifest


def _filesystem(uri: str):
    """(pyarrow filesystem, path in it) for a URI or a local (shared mount) path."""
    import pyarrow.fs as pafs

    if "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pafs.ArrowInvalid, OSError, ValueError) as err:  # ArrowInvalid is a ValueError; OSError: no such bucket
        raise DataError(uri, f"train.shards_uri: not a filesystem pyarrow can open: {err}") from err


def published_location(shards_dir: Path, uri: str) -> str:
    """`<uri>/<dataset>-<first 12 hex digits of the manifest's SHA-256>`."""
    digest = hashlib.sha256((shards_dir / MANIFEST).read_bytes()).hexdigest()[:12]
    base = uri if "://" in uri else str(Path(uri).resolve())
    return f"{base.rstrip('/')}/{shards_dir.name}-{digest}"


def publish_shards(shards_dir: Path, uri: str) -> str:
    """Copy `shards_dir` (manifest.json and its Parquet files) to `published_location`; returns it."""
    import pyarrow.fs as pafs

    manifest = read_manifest(shards_dir)
    location = published_location(shards_dir, uri)
    filesystem, root = _filesystem(location)
    if filesystem.get_file_info(f"{root}/{MANIFEST}").type != pafs.FileType.NotFound:
        return location  # complete: the manifest is the last file written
    local = pafs.LocalFileSystem()
    files = [shard["path"] for split in manifest["splits"].values() for shard in split["shards"]] + [MANIFEST]
    for name in files:  # the manifest last: it marks the folder complete
        target = f"{root}/{name}"
        try:
            filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(
                str((shards_dir / name).resolve()), target, source_filesystem=local, destination_filesystem=filesystem
            )
        except OSError as err:
            raise DataError(shards_dir / name, f"train.shards_uri: could not copy it to {location}: {err}") from err
    return location


def published_files(location: str, manifest: dict, split: str) -> list[str]:
    """The URIs of one split's Parquet files under a published `location`."""
    return [f"{location}/{shard['path']}" for shard in manifest["splits"][split]["shards"]]
