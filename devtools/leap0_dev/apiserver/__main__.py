"""``python -m leap0_dev.apiserver`` is ``leap0 dev apiserver``."""

from __future__ import annotations

import sys

from leap0.cli import main

if __name__ == "__main__":
    sys.exit(main(["dev", "apiserver", *sys.argv[1:]]))
