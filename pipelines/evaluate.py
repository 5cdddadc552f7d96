"""DVC stage `evaluate` (see dvc.yaml). Its one progress bar (clips of the test split) stays on:
unlike the train stage's Ray Data bars, it prints one short line per batch in a DVC log."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
