"""Download a dataset into the layout fastgen's loaders read.

    python scripts/download_data.py --dataset fashion_mnist            # -> $DATA_ROOT_DIR/fashion_mnist/*.gz
    python scripts/download_data.py --dataset cifar10 --dest /data     # -> /data/cifar10/cifar10-32x32.zip
    python scripts/download_data.py --dataset imagenet-64 --imagenet-source /data/kaggle-imagenet
                                                                       # -> $DATA_ROOT_DIR/imagenet-64/imagenet-64x64.zip
Every download is checked against its published MD5; a mismatch is an error and nothing is kept.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from fastgen.datasets.download import DATASET_NAMES, download_dataset  # noqa: E402
from fastgen.utils.env import data_root_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASET_NAMES), help="which dataset to fetch")
    parser.add_argument("--dest", default=None, help="root data directory (default: $DATA_ROOT_DIR, "
                        "else $FASTGEN_OUTPUT_ROOT/DATA)")
    parser.add_argument("--force", action="store_true", help="download and convert again even if files exist")
    parser.add_argument("--edm-zip", action="store_true", help="(MNIST/Fashion-MNIST) also write EDM zips")
    parser.add_argument("--mirror", default=None, help="base URL tried before the published mirrors (an internal "
                        "mirror; file:// works); checksums are still the published ones")
    parser.add_argument("--imagenet-source", default=None, help="(imagenet-64) folder holding ILSVRC/Data/CLS-LOC/"
                        "train (see the message printed without it)")
    args = parser.parse_args(argv)
    dest = args.dest or data_root_dir()
    try:
        path = download_dataset(args.dataset, dest, force=args.force, edm_zip=args.edm_zip, mirror=args.mirror,
                                imagenet_source=args.imagenet_source)
    except ValueError as error:  # what the user has to provide or fix
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as error:  # download / checksum failures
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
