"""DVC stage `evaluate` (see dvc.yaml)."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["--no-progress", "evaluate", *sys.argv[1:]]))
