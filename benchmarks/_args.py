"""The command line every benchmark shares: `--help` prints the script's docstring and exits before any work.

Standard library only, so a script can parse its arguments before it imports torch or trains anything.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose --help shows the benchmark's whole docstring (what it measures and how to run it)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_methods(doc: str | None, methods: Sequence[str], argv: Sequence[str] | None = None) -> tuple[str, ...]:
    """Method names given as arguments (a subset of `methods`, in the given order); all of them when none."""
    parser = benchmark_parser(doc)
    parser.add_argument("methods", nargs="*", choices=list(methods), metavar="METHOD",
                        help=f"methods to run (default: all): {', '.join(methods)}")
    return tuple(parser.parse_args(argv).methods) or tuple(methods)
