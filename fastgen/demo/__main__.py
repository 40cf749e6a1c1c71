"""`python -m fastgen.demo`: see fastgen/demo/pipeline.py and README.md."""

import sys

from fastgen.cli import run_cli
from fastgen.demo.pipeline import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
