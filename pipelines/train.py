"""DVC stage `train`: models/<dataset>/ and metrics/train.json, metrics/train_history.csv."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
