"""DVC stage `fetch`: data/raw/<dataset>/ (the built embedded set, or a real dataset's index)."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["fetch", *sys.argv[1:]]))
