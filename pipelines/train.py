"""DVC stage `train`: models/<dataset>/ and metrics/train.json, metrics/train_history.csv.

Live progress bars (Ray Data's, the epoch's steps) are turned off here: in a DVC log they print a
line per update. Rank 0 still logs one line per epoch.
"""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["--no-progress", "train", *sys.argv[1:]]))
