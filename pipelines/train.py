"""DVC stage `train`: models/<dataset>/ and metrics/train.json, metrics/train_history.csv.

Ray Data's live progress bars are turned off here: in a DVC log they print a line per update.
"""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["--no-progress", "train", *sys.argv[1:]]))
