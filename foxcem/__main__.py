"""``python -m foxcem``: the same command line as the ``foxcem`` console script."""

import sys

from foxcem.cli import main

if __name__ == "__main__":
    sys.exit(main())
