"""WebDataset loader benchmark (run from the repo root; `--help` lists the knobs).

Prints three ratios, measured in one run on shards written to a temporary folder:
  1. image decode throughput (samples/s, one worker = in-process) of `ImageWDSLoader` over a bare webdataset
     pipeline doing the same decode, shuffle buffer and batching (target >= 0.9): the price of the deterministic,
     resumable order;
  2. resident memory after 20k samples over after 1k (target <= 1.1): host memory stays bounded in long runs;
  3. S3 (moto server on 127.0.0.1) over local-disk throughput of the same loader on the same shards.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=3000, help="samples timed for the throughput ratios")
    parser.add_argument("--rss_samples", type=int, default=20000, help="samples read for the memory ratio")
    parser.add_argument("--image_size", type=int, default=64, help="stored image side (decoded to --crop)")
    parser.add_argument("--crop", type=int, default=32, help="decoded image side")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per_shard", type=int, default=250)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--shuffle_size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best of each kept)")
    parser.add_argument("--skip_s3", action="store_true", help="no moto server / S3 ratio")
    return parser.parse_args(argv)


def write_shards(root: str, args) -> list[str]:
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import numpy as np
    from _wds_shards import png_bytes, write_shard

    rng = np.random.default_rng(0)
    paths = []
    for s in range(args.shards):
        samples = [{"__key__": f"{s:04d}{i:05d}",
                    "jpg": png_bytes(rng.integers(0, 255, (args.image_size, args.image_size, 3), dtype=np.uint8),
                                     "JPEG"),
                    "txt": f"caption {s} {i}".encode()} for i in range(args.per_shard)]
        paths.append(write_shard(os.path.join(root, f"shard-{s:04d}.tar"), samples))
    return paths


def ours(tag: str, args, credential_file=None):
    from fastgen.datasets.wds.loaders import ImageWDSLoader

    return ImageWDSLoader([tag], batch_size=args.batch_size, img_size=args.crop, shuffle_size=args.shuffle_size,
                          num_workers=0, rank=0, world_size=1, credential_file=credential_file,
                          presets={"neg_condition": "empty_string"})


def bare(paths: list[str], args):
    """The same work with webdataset's own pipeline: shuffle buffer, decode, collate."""
    import webdataset as wds
    from torch.utils.data import default_collate

    from fastgen.datasets.wds.decode import decode_image, decode_text

    def decode(sample):
        return {"real": decode_image(sample["jpg"], args.crop), "condition": decode_text(sample["txt"]),
                "neg_condition": "", "fname": sample["__key__"], "shard": sample["__url__"]}

    pipeline = (wds.WebDataset(paths, shardshuffle=False, empty_check=False).repeat()
                .shuffle(args.shuffle_size).map(decode).batched(args.batch_size, collation_fn=default_collate))
    return pipeline


def throughput(iterable, samples: int, batch_size: int) -> float:
    iterator = iter(iterable)
    next(iterator)  # warm-up: first shard open, buffer fill
    steps = max(1, samples // batch_size)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch_size / (time.perf_counter() - start)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_ratio(tag: str, args) -> tuple[float, float]:
    iterator = iter(ours(tag, args))
    read, at_1k = 0, None
    while read < args.rss_samples:
        next(iterator)
        read += args.batch_size
        if at_1k is None and read >= 1000:
            gc.collect()
            at_1k = rss_mb()
    gc.collect()
    return at_1k, rss_mb()


def s3_throughput(root: str, paths: list[str], args) -> float:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_EC2_METADATA_DISABLED": "true"})
        from fastgen.utils.s3 import S3Client

        client = S3Client(credential_file=None)
        client.client.create_bucket(Bucket="bench")
        for path in paths:
            client.upload_file(path, f"s3://bench/wds/{os.path.basename(path)}")
        return throughput(ours("WDS:s3://bench/wds", args), args.samples, args.batch_size)
    finally:
        server.stop()


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, REPO)  # run from a checkout
    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as root:
        paths = write_shards(root, args)
        tag = f"WDS:{root}"
        our_rate = bare_rate = 0.0
        for _ in range(args.rounds):  # alternating rounds, best of each: a shared machine's load hits both alike
            bare_rate = max(bare_rate, throughput(bare(paths, args), args.samples, args.batch_size))
            our_rate = max(our_rate, throughput(ours(tag, args), args.samples, args.batch_size))
        print(f"image decode {args.image_size}->{args.crop}px, batch {args.batch_size}, one worker: ours "
              f"{our_rate:.0f} samples/s, bare webdataset {bare_rate:.0f} samples/s, ratio {our_rate / bare_rate:.3f} "
              "(target >= 0.9)")
        at_1k, at_end = memory_ratio(tag, args)
        print(f"RSS after 1k samples {at_1k:.0f} MB, after {args.rss_samples // 1000}k {at_end:.0f} MB, ratio "
              f"{at_end / at_1k:.3f} (target <= 1.1)")
        if not args.skip_s3:
            s3_rate = s3_throughput(root, paths, args)
            print(f"S3 (moto, loopback) {s3_rate:.0f} samples/s over local {our_rate:.0f}: ratio "
                  f"{s3_rate / our_rate:.3f}")


if __name__ == "__main__":
    main()
