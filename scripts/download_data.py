"""Download a dataset into the layout fastgen's loaders read.

    python scripts/download_data.py --dataset fashion_mnist            # -> $DATA_ROOT_DIR/fashion_mnist/*.gz
    python scripts/download_data.py --dataset cifar10 --dest /data     # -> /data/cifar10/cifar10-32x32.zip
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from fastgen.datasets.download import DATASETS, download_dataset  # noqa: E402
from fastgen.utils.env import data_root_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="which dataset to fetch")
    parser.add_argument("--dest", default=None, help="root data directory (default: $DATA_ROOT_DIR, "
                        "else $FASTGEN_OUTPUT_ROOT/DATA)")
    parser.add_argument("--force", action="store_true", help="download and convert again even if files exist")
    parser.add_argument("--edm-zip", action="store_true", help="(MNIST/Fashion-MNIST) also write EDM zips")
    args = parser.parse_args(argv)
    dest = args.dest or data_root_dir()
    try:
        path = download_dataset(args.dataset, dest, force=args.force, edm_zip=args.edm_zip)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
