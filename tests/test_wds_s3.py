"""WebDataset shards streamed from S3 (moto on 127.0.0.1) through a proxy that drops connections mid-shard: the
retried run yields exactly the samples (ids and pixels) of a local read; wrong credentials are one clear line."""

from urllib.parse import urlparse

import pytest
import torch
from _fault_proxy import FaultProxy
from _wds_shards import image_shards
from test_s3 import KEY_ID, SECRET, isolate_aws, moto_endpoint  # noqa: F401  (shared moto fixtures)

from fastgen.datasets.wds.loaders import ImageWDSLoader
from fastgen.datasets.wds.shards import S3ShardStream
from fastgen.utils import s3


def loader(tag, **kw):
    return ImageWDSLoader([tag], batch_size=4, key_map={"real": "png", "condition": "txt"}, img_size=8,
                          shuffle_size=5, num_workers=0, rank=0, world_size=1, credential_file=None,
                          s3_backoff_s=0.01, **kw)


def read_all(ld, steps):
    iterator = iter(ld)
    batches = [next(iterator) for _ in range(steps)]
    return [n for b in batches for n in b["fname"]], torch.cat([b["real"] for b in batches])


@pytest.fixture(scope="module")
def uploaded(moto_endpoint, tmp_path_factory):  # noqa: F811
    """Shards written and uploaded once for the module (the environment of test_s3's s3_env, module-wide)."""
    tmp_path = tmp_path_factory.mktemp("wds_s3")
    with pytest.MonkeyPatch.context() as patch:
        isolate_aws(patch, tmp_path)
        for name, value in (("AWS_ACCESS_KEY_ID", KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET),
                            ("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", moto_endpoint)):
            patch.setenv(name, value)
        paths = image_shards(str(tmp_path / "local"), num_shards=3, per_shard=8, size=24)
        client = s3.S3Client(credential_file=None)
        client.client.create_bucket(Bucket="wds-shards")
        for path in paths:
            client.upload_file(path, f"s3://wds-shards/data/{path.rsplit('/', 1)[-1]}")
        yield str(tmp_path / "local"), "s3://wds-shards/data"


def test_s3_stream_with_dropped_connections_yields_the_local_samples(uploaded, monkeypatch):
    local, remote = uploaded
    expected_ids, expected_pixels = read_all(loader(f"WDS:{local}"), 12)
    endpoint = urlparse(s3.endpoint_url())
    with FaultProxy((endpoint.hostname, endpoint.port), cut_after=9000, faults=4) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        ids, pixels = read_all(loader(f"WDS:{remote}"), 12)
        assert proxy.cuts == 4  # the faults really happened (mid-shard: each shard is ~30 kB)
    assert ids == expected_ids and torch.equal(pixels, expected_pixels)


def test_s3_stream_gives_up_with_one_line_after_retries(uploaded, monkeypatch):
    _, remote = uploaded
    endpoint = urlparse(s3.endpoint_url())
    with FaultProxy((endpoint.hostname, endpoint.port), cut_after=100, faults=1000) as proxy:  # inside headers
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries off: ours are under test
        stream = S3ShardStream(f"{remote}/shard-0000.tar", client=s3.S3Client(credential_file=None), max_retries=2,
                               backoff_s=0.01)
        with pytest.raises(s3.S3Error, match="shard-0000.tar at byte .* after 2 retries"):
            stream.read()
        assert proxy.cuts >= 3


def test_wrong_credentials_one_line_naming_endpoint(uploaded, monkeypatch):
    from moto import settings

    _, remote = uploaded
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks keys: ours are unknown
    with pytest.raises(s3.S3AccessDeniedError) as info:
        loader(f"WDS:{remote}")
    message = str(info.value)
    assert "\n" not in message and s3.endpoint_url() in message and SECRET not in message


def test_precompute_writes_shards_to_s3_and_skips_finished(uploaded, tmp_path):
    """Latent shards go to an s3:// prefix (one object per shard); a rerun finds them and encodes nothing."""
    from fastgen.datasets.wds.loaders import WDSLoader
    from fastgen.datasets.wds.precompute import precompute
    from fastgen.datasets.wds.shards import list_shards

    class MeanEncoder:  # the two-method encoder interface precompute documents: per-channel means, prompt lengths
        def encode_images(self, images, sample=False):
            return images.mean(dim=(2, 3), keepdim=True)

        def encode_text(self, prompts):
            return {"length": torch.tensor([[float(len(p))] for p in prompts])}

    _, remote = uploaded
    shards = list_shards([f"WDS:{remote}"], credential_file=None)
    out = remote.replace("/data", "/latents")
    first = precompute(MeanEncoder(), shards, out, img_size=8, media_key="png", show_progress=False)
    again = precompute(MeanEncoder(), shards, out, img_size=8, media_key="png", show_progress=False)
    assert first["shards_done"] == 3 and first["written"] == 24 and again["shards_skipped"] == 3
    loader = WDSLoader([f"WDS:{out}"], batch_size=4, key_map={"real": "latent.pth", "condition": "txt_emb.pth",
                                                              "caption": "txt"}, num_workers=0, rank=0,
                       world_size=1, credential_file=None)
    batch = next(iter(loader))
    for k, name in enumerate(batch["fname"]):  # image_shards: constant grey level id % 251
        assert torch.allclose(batch["real"][k], torch.full((3, 1, 1), (int(name) % 251) / 127.5 - 1), atol=1e-5)
        assert batch["condition"]["length"][k].item() == len(batch["caption"][k])
