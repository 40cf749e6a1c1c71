"""`python -m fastgen.demo`: see fastgen/demo/pipeline.py and README.md."""

import sys

from fastgen.demo.pipeline import main
from fastgen.utils.scripts import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
