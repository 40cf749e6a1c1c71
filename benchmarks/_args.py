"""The command line every benchmark shares: `--help` prints the script's docstring and exits before any work.

Standard library only, so a script can parse its arguments before it imports torch or trains anything.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose --help shows the benchmark's whole docstring (what it measures and how to run it)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def methods_parser(doc: str | None, methods: Sequence[str]) -> argparse.ArgumentParser:
    """benchmark_parser + the positional METHOD names (checked by `parse_method_args`)."""
    parser = benchmark_parser(doc)
    # choices are checked by hand: argparse (3.11) tests an empty nargs="*" positional's default [] against them
    parser.add_argument("methods", nargs="*", metavar="METHOD",
                        help=f"methods to run (default: all): {', '.join(methods)}")
    return parser


def seeded_methods_parser(doc: str | None, methods: Sequence[str]) -> argparse.ArgumentParser:
    """methods_parser + `--seeds` (trainer.seed values; several give median [min, max] per method)."""
    parser = methods_parser(doc, methods)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="trainer.seed values (default 0); several add median [min, max] per method")
    return parser


def parse_method_args(parser: argparse.ArgumentParser, methods: Sequence[str],
                      argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse; `args.methods` = the given names (a subset of `methods`, in the given order), all of them when none."""
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in methods]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(methods)}")
    args.methods = tuple(args.methods) or tuple(methods)
    return args


def parse_methods(doc: str | None, methods: Sequence[str], argv: Sequence[str] | None = None) -> tuple[str, ...]:
    """Method names given as arguments (a subset of `methods`, in the given order); all of them when none."""
    return parse_method_args(methods_parser(doc, methods), methods, argv).methods
