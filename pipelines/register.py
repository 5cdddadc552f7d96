"""DVC stage `register` (see dvc.yaml)."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["--no-progress", "register", *sys.argv[1:]]))
