"""DVC stage `preprocess`: data/shards/<dataset>/ (Parquet shards + manifest.json)."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
