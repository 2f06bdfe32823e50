"""Command line: ``python -m sk_ecprune {demo,fit,curve}`` (see :mod:`sk_ecprune.cli`)."""

import sys

from .cli import format_table, main, run_demo

__all__ = ["format_table", "main", "run_demo"]

if __name__ == "__main__":
    sys.exit(main())
