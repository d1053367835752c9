"""Run ``replicate`` on its own: ``python -m s3syncer.replicate``."""

from __future__ import annotations

import argparse

from .arguments import add_arguments
from .command import PROG, run


def main() -> int:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(prog=PROG)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
