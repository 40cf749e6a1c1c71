"""S3 storage against a real S3 endpoint (moto's server on 127.0.0.1): URLs, verified cache, S3 checkpoints with
fallback past a corrupt object, credentials errors, pretrained weights and datasets from s3://, and train.py saving
to and resuming from S3 with credentials read from ./credentials/s3.json."""

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from _config_files import REPO
from loguru import logger

from fastgen.configs.config import BaseCheckpointerConfig
from fastgen.utils import s3
from fastgen.utils.checkpointer import Checkpointer, S3Checkpointer

SECRET = "test-secret-" + uuid.uuid4().hex  # unique, so any leak into output is found by plain substring search
KEY_ID = "AKIATESTFASTGEN00001"
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL", "AWS_PROFILE")


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: the OS picks a free one
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def isolate_aws(monkeypatch, tmp_path):
    """No AWS settings from this machine: no variables, no ~/.aws files, no instance-metadata lookups."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch, tmp_path):
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


@pytest.fixture
def bucket(s3_env):
    name = f"fastgen-test-{uuid.uuid4().hex[:12]}"
    s3.S3Client(credential_file=None).client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def warnings_log():
    messages = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    yield messages
    logger.remove(sink)


def tiny_state(iteration, seed):
    g = torch.Generator().manual_seed(seed)
    return {"model": {"net": {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}},
            "optimizer": {"net": {"step": torch.tensor(float(iteration))}}, "iteration": iteration}


# --- URLs and client ---------------------------------------------------------------------------------------------------
def test_parse_s3_url_and_join():
    url = s3.parse_s3_url("s3://my-bucket/a/b/c.pth")
    assert (url.bucket, url.key) == ("my-bucket", "a/b/c.pth")
    assert s3.parse_s3_url("s3://my-bucket") == s3.S3Url("my-bucket", "")
    assert str(s3.parse_s3_url("s3://b/prefix/").join("/x/y/", "0000100.pth")) == "s3://b/prefix/x/y/0000100.pth"
    assert str(s3.S3Url("b").join("k")) == "s3://b/k"
    for bad in ("/local/path", "s3://", "s3:///key", "http://b/k"):
        with pytest.raises(ValueError, match="s3://bucket"):
            s3.parse_s3_url(bad)


def test_cache_path_mirrors_bucket_and_key(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    assert s3.cache_path("s3://bk1/x/y.bin") == str(tmp_path / ".cache" / "s3" / "bk1" / "x" / "y.bin")
    with pytest.raises(ValueError, match="prefix, not an object"):
        s3.cache_path("s3://bk1/x/")
    for key in ("a/../../etc/passwd", "a//b", "./a"):
        with pytest.raises(ValueError, match="path segment"):
            s3.cache_path(f"s3://bk1/{key}")


def test_missing_credentials_is_one_clear_error(monkeypatch, tmp_path):
    isolate_aws(monkeypatch, tmp_path)
    with pytest.raises(s3.S3CredentialsError) as info:
        s3.S3Client(credential_file=str(tmp_path / "credentials" / "s3.json"))
    message = str(info.value)
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert str(tmp_path / "credentials" / "s3.json") in message and "\n" not in message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)  # a key id without its secret
    with pytest.raises(s3.S3CredentialsError, match="incomplete S3 credentials"):
        s3.S3Client(credential_file=None)


def test_credentials_and_endpoint_from_s3_json(moto_endpoint, monkeypatch, tmp_path):
    isolate_aws(monkeypatch, tmp_path)
    path = tmp_path / "s3.json"
    path.write_text(json.dumps({"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET,
                                "region_name": "eu-west-1", "endpoint_url": moto_endpoint}))
    client = s3.S3Client(credential_file=str(path))
    assert (client.endpoint_url, client.region) == (moto_endpoint, "eu-west-1")
    client.client.create_bucket(Bucket="json-creds-bucket",
                                CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.upload_bytes(b"hello", "s3://json-creds-bucket/k")
    assert client.head("s3://json-creds-bucket/k") == {"etag": "5d41402abc4b2a76b9719d911017c592", "size": 5}


def test_missing_bucket_and_key_errors(s3_env, bucket):
    client = s3.S3Client(credential_file=None)
    with pytest.raises(s3.S3BucketNotFoundError) as info:
        client.check_bucket("s3://no-such-bucket-xyz/some/prefix")
    assert "'no-such-bucket-xyz' does not exist" in str(info.value) and s3_env in str(info.value)
    with pytest.raises(s3.S3BucketNotFoundError):
        client.head("s3://no-such-bucket-xyz/k")
    assert client.head(f"s3://{bucket}/missing") is None and not client.exists(f"s3://{bucket}/missing")
    with pytest.raises(s3.S3NotFoundError, match=f"s3://{bucket}/missing: no such object"):
        client.cached_download(f"s3://{bucket}/missing")
    with pytest.raises(s3.S3BucketNotFoundError, match="s3_container"):
        S3Checkpointer("s3://no-such-bucket-xyz/ckpt", "p/g/n/checkpoints")


def test_access_denied_names_key_and_variables_not_the_secret(s3_env, bucket, monkeypatch, tmp_path):
    from moto import settings

    client = s3.S3Client(credential_file="./credentials/s3.json")
    client.upload_bytes(b"data", f"s3://{bucket}/obj")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks keys: ours are unknown
    with pytest.raises(s3.S3AccessDeniedError) as info:
        client.list(f"s3://{bucket}/")
    message = str(info.value)
    assert f"s3://{bucket}" in message and "InvalidAccessKeyId" in message
    assert "AWS_ACCESS_KEY_ID" in message and "./credentials/s3.json" in message and SECRET not in message
    with pytest.raises(s3.S3AccessDeniedError, match=f"s3://{bucket}/obj"):
        client.download_file(f"s3://{bucket}/obj", str(tmp_path / "never-written"), expected={"etag": "", "size": 4})
    (tmp_path / "ckpt.pth").write_bytes(b"x" * 10)
    with pytest.raises(s3.S3AccessDeniedError, match=f"upload to s3://{bucket}/up.pth"):  # via S3UploadFailedError
        client.upload_file(str(tmp_path / "ckpt.pth"), f"s3://{bucket}/up.pth")
    assert not list(tmp_path.glob(".never-written*"))  # no temporary file left behind


# --- transfers and cache -----------------------------------------------------------------------------------------------
def test_cached_download_reuses_verifies_and_refreshes(s3_env, bucket, tmp_path):
    client = s3.S3Client(credential_file=None)
    url = f"s3://{bucket}/weights/blob.bin"
    payload = os.urandom(3000)
    source = tmp_path / "blob.bin"
    source.write_bytes(payload)
    info = client.upload_file(str(source), url)
    assert info["size"] == 3000 and info["etag"] == s3.file_digests(str(source))[1]

    local = client.cached_download(url)
    assert local == s3.cache_path(url) and open(local, "rb").read() == payload
    record = s3.read_sidecar(local)
    assert record["etag"] == info["etag"] and record["sha256"] == s3.file_digests(local)[0]
    inode = os.stat(local).st_ino
    assert client.cached_download(url) == local and os.stat(local).st_ino == inode  # re-used, not re-downloaded

    with open(local, "r+b") as file:  # damaged on disk: same size, different bytes -> sha256 mismatch
        file.write(b"\0" * 10)
    assert open(client.cached_download(url), "rb").read() == payload

    client.upload_bytes(b"new contents", url)  # object replaced -> ETag changes -> fresh download
    assert open(client.cached_download(url), "rb").read() == b"new contents"
    listed = client.list(f"s3://{bucket}/weights")
    assert [(x["key"], x["size"]) for x in listed] == [("weights/blob.bin", 12)]


def test_multipart_upload_and_ranged_download(s3_env, bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)  # S3's smallest part size
    client = s3.S3Client(credential_file=None)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * 1024 * 1024 + 17))
    url = f"s3://{bucket}/big/big.bin"
    info = client.upload_file(str(source), url)
    assert info["size"] == 6 * 1024 * 1024 + 17 and info["etag"].endswith("-1")  # a multipart ETag, not an MD5
    local = client.cached_download(url)
    assert s3.file_digests(local)[0] == s3.file_digests(str(source))[0]


def test_unreachable_endpoint_uses_verified_cache(s3_env, bucket, monkeypatch, warnings_log):
    client = s3.S3Client(credential_file=None)
    url = f"s3://{bucket}/offline/w.bin"
    client.upload_bytes(b"cached bytes", url)
    local = client.cached_download(url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    offline = s3.S3Client(credential_file=None)
    assert offline.cached_download(url) == local and open(local, "rb").read() == b"cached bytes"
    assert any("unreachable" in m and "cached copy" in m for m in warnings_log)
    with pytest.raises(s3.S3Error, match="AWS_ENDPOINT_URL"):
        offline.cached_download(f"s3://{bucket}/offline/never-cached.bin")


# --- checkpoints -------------------------------------------------------------------------------------------------------
def test_from_config_selects_s3_with_run_dir_key_prefix(s3_env, bucket, tmp_path):
    config = BaseCheckpointerConfig()
    config.use_s3, config.s3_container = True, f"s3://{bucket}/prefix"
    save_dir = os.path.join(os.environ["FASTGEN_OUTPUT_ROOT"], "proj", "grp", "run1", "checkpoints")
    checkpointer = Checkpointer.from_config(config, save_dir=save_dir)
    assert isinstance(checkpointer, S3Checkpointer)
    assert checkpointer.url(1500) == f"s3://{bucket}/prefix/proj/grp/run1/checkpoints/0001500.pth"
    with pytest.raises(ValueError, match="outside it"):
        Checkpointer.from_config(config, save_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="local_copy_type"):
        S3Checkpointer(f"s3://{bucket}", "a/checkpoints", local_copy_type="maybe")


def test_s3_checkpoint_round_trip(s3_env, bucket):
    checkpointer = S3Checkpointer(f"s3://{bucket}/ckpt", "proj/grp/run/checkpoints", local_copy_type="delete")
    assert checkpointer.list_checkpoints() == [] and checkpointer.load_latest() is None
    states = {100: tiny_state(100, 1), 200: tiny_state(200, 2)}
    for iteration, state in states.items():
        assert checkpointer.save(state, iteration) == f"s3://{bucket}/ckpt/proj/grp/run/checkpoints/{iteration:07d}.pth"
        assert not os.path.exists(s3.cache_path(checkpointer.url(iteration)))  # "delete": no local copy kept
    keys = [x["key"] for x in checkpointer.storage.list(f"s3://{bucket}")]
    assert keys == ["ckpt/proj/grp/run/checkpoints/0000100.pth", "ckpt/proj/grp/run/checkpoints/0000200.pth"]
    assert checkpointer.list_checkpoints() == [(100, checkpointer.url(100)), (200, checkpointer.url(200))]
    state, path = checkpointer.load_latest()
    assert path == checkpointer.url(200) and state["iteration"] == 200
    for key in ("w", "b"):
        assert torch.equal(state["model"]["net"][key], states[200]["model"]["net"][key])
    assert torch.equal(checkpointer.load(checkpointer.url(100))["model"]["net"]["w"], states[100]["model"]["net"]["w"])


def test_keep_latest_leaves_one_verified_local_copy(s3_env, bucket):
    checkpointer = S3Checkpointer(f"s3://{bucket}", "p/g/n/checkpoints")  # default local_copy_type="keep_latest"
    for iteration in (1, 2, 3):
        checkpointer.save(tiny_state(iteration, iteration), iteration)
    assert [it for it, _ in checkpointer.list_local_copies()] == [3]
    local = s3.cache_path(checkpointer.url(3))
    inode = os.stat(local).st_ino
    state, _ = checkpointer.load_latest()
    assert state["iteration"] == 3 and os.stat(local).st_ino == inode  # resumed from the local copy, no download
    assert torch.equal(state["model"]["net"]["w"], tiny_state(3, 3)["model"]["net"]["w"])


def test_corrupt_newest_object_falls_back_to_previous(s3_env, bucket, warnings_log):
    checkpointer = S3Checkpointer(f"s3://{bucket}/c", "p/g/n/checkpoints", local_copy_type="delete")
    checkpointer.save(tiny_state(100, 1), 100)
    checkpointer.save(tiny_state(200, 2), 200)
    buffer = io.BytesIO()
    torch.save(tiny_state(300, 3), buffer)
    checkpointer.storage.upload_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2], checkpointer.url(300))

    state, path = checkpointer.load_latest()
    assert state["iteration"] == 200 and path == checkpointer.url(200)
    assert torch.equal(state["model"]["net"]["w"], tiny_state(200, 2)["model"]["net"]["w"])
    warning = " ".join(m for m in warnings_log if "unusable" in m)
    assert checkpointer.url(300) in warning and "falling back to the previous checkpoint" in warning
    assert not os.path.exists(s3.cache_path(checkpointer.url(300)))  # the corrupt download is not kept


def test_pretrained_weights_from_s3_load_equal(s3_env, bucket, tmp_path):
    from fastgen.methods.model import load_weights_file

    net = torch.nn.Linear(5, 3)
    path = tmp_path / "teacher.pth"
    torch.save(net.state_dict(), path)
    url = f"s3://{bucket}/models/teacher.pth"
    s3.S3Client(credential_file=None).upload_file(str(path), url)
    loaded = load_weights_file(url)
    assert loaded.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded[key], value)
    restored = torch.nn.Linear(5, 3)
    restored.load_state_dict(load_weights_file(url))  # second time from the cache
    x = torch.randn(2, 5)
    assert torch.equal(restored(x), net(x))


# --- datasets ----------------------------------------------------------------------------------------------------------
def make_zip(path, count=6, size=8):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        labels = []
        for i in range(count):
            buffer = io.BytesIO()
            PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
            archive.writestr(f"img{i:03d}.png", buffer.getvalue())
            labels.append([f"img{i:03d}.png", i % 3])
        archive.writestr("dataset.json", json.dumps({"labels": labels}))


def test_image_loader_reads_dataset_zip_from_s3(s3_env, bucket, tmp_path, monkeypatch):
    from fastgen.datasets.image_loader import ImageLoader

    monkeypatch.setenv("DATA_ROOT_DIR", str(tmp_path / "data"))
    local_zip = tmp_path / "tiny.zip"
    make_zip(local_zip)
    url = f"s3://{bucket}/datasets/tiny.zip"
    s3.S3Client(credential_file=None).upload_file(str(local_zip), url)

    def first_batch(**kwargs):
        loader = ImageLoader(batch_size=3, shuffle=False, rank=0, world_size=1, **kwargs)
        return next(iter(loader)), loader

    expected, _ = first_batch(dataset_path=str(local_zip))
    from_url, loader = first_batch(dataset_path=url)
    from_s3_path, _ = first_batch(dataset_path="not-here.zip", s3_path=url)
    assert loader.label_dim == 3 and loader.image_shape == (3, 8, 8)
    for batch in (from_url, from_s3_path):
        for key in ("real", "condition", "idx"):
            assert torch.equal(batch[key], expected[key])
    assert open(s3.cache_path(url), "rb").read() == local_zip.read_bytes()


def _rank0_first_worker(rank, url, out_dir):
    path = s3.cached_download_rank0_first(url, credential_file=None)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as file:
        json.dump({"path": path, "inode": os.stat(path).st_ino, "sha256": s3.file_digests(path)[0]}, file)


@pytest.mark.slow
def test_dataset_download_rank0_first_then_cached_on_other_ranks(s3_env, bucket, tmp_path):
    from fastgen.utils.distributed.launch import spawn_local

    url = f"s3://{bucket}/datasets/shared.zip"
    payload = os.urandom(50_000)
    s3.S3Client(credential_file=None).upload_bytes(payload, url)
    spawn_local(_rank0_first_worker, 2, args=(url, str(tmp_path)))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1]  # same file, same inode: rank 1 re-used rank 0's download
    assert results[0]["path"] == s3.cache_path(url) and open(results[0]["path"], "rb").read() == payload


def _train_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fastgen_train_entry_s3", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("fsdp", [False, True], ids=["files", "dcp"])
def test_fresh_run_over_checkpoints_on_s3_only_is_refused(fsdp, s3_env, bucket, tmp_path, monkeypatch, capsys):
    """An earlier run left its checkpoints on S3 only (e.g. another machine): a fresh run with the same name is
    refused before anything is written, naming the S3 prefix and both ways out."""
    from fastgen.cli import run_cli

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    client = s3.S3Client(credential_file=None)
    prefix = f"s3://{bucket}/prefix/fastgen/toy/s3run/checkpoints"
    if fsdp:  # a complete DCP folder: its metadata and extras objects
        from fastgen.utils.dcp_checkpointer import EXTRAS_FILE, METADATA_FILE

        newest = "0000004"
        for iteration in ("0000002", newest):
            for name in (METADATA_FILE, EXTRAS_FILE):
                client.upload_bytes(b"old run", f"{prefix}/{iteration}/{name}")
    else:
        newest = "0000004.pth"
        for name in ("0000002.pth", newest):
            client.upload_bytes(b"old run", f"{prefix}/{name}")
    before = sorted(x["url"] for x in client.list(prefix))
    args = ["--config=fastgen/configs/experiments/Toy/config_sft.py", "-", "log_config.name=s3run",
            "trainer.checkpointer.use_s3=True", f"trainer.checkpointer.s3_container=s3://{bucket}/prefix",
            "trainer.resume=False", "trainer.max_iter=2", f"trainer.fsdp={fsdp}"]
    monkeypatch.chdir(REPO)
    assert run_cli(_train_main(), args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {prefix} already holds 2 checkpoint(s) of another run (newest: {newest}) and trainer.resume=False; "
        f"start the new run in its own folder with log_config.name=NEW_NAME, or continue that run with "
        f"trainer.resume=True")
    assert sorted(x["url"] for x in client.list(prefix)) == before  # nothing on S3 touched
    run_folder = tmp_path / "out/fastgen/toy/s3run"
    assert not (run_folder / "config.yaml").exists() and not (run_folder / "run.lock").exists()


# --- train.py end to end -----------------------------------------------------------------------------------------------
def run_train(cwd, out_root, overrides, log_level="INFO"):
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARS and k not in ("WANDB_API_KEY", "RANK")}
    env.update({"FASTGEN_OUTPUT_ROOT": str(out_root), "AWS_EC2_METADATA_DISABLED": "true", "WANDB_MODE": "offline",
                "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-aws-credentials"),
                "AWS_CONFIG_FILE": str(cwd / "no-aws-config"), "PYTHONPATH": str(REPO)})
    args = [sys.executable, str(REPO / "train.py"), f"--config={REPO}/fastgen/configs/experiments/Toy/config_sft.py",
            "--log_level", log_level, "-", "~trainer.callbacks.wandb", "dataloader_train.batch_size=16",
            "model.net.hidden_dim=16", "model.net.num_layers=1", "trainer.save_ckpt_iter=2", "log_config.name=s3run",
            *overrides]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_py_saves_to_and_resumes_from_s3(moto_endpoint, monkeypatch, tmp_path):
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    bucket_name = f"fastgen-train-{uuid.uuid4().hex[:8]}"
    client = s3.S3Client(credential_file=None)
    client.client.create_bucket(Bucket=bucket_name)
    work = tmp_path / "work"  # the runs' cwd: credentials only from its ./credentials/s3.json
    (work / "credentials").mkdir(parents=True)
    (work / "credentials" / "s3.json").write_text(json.dumps({
        "aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET, "region_name": "us-east-1",
        "endpoint_url": moto_endpoint}))
    s3_args = ["trainer.checkpointer.use_s3=True", f"trainer.checkpointer.s3_container=s3://{bucket_name}/prefix"]

    first = run_train(work, tmp_path / "out1", [*s3_args, "trainer.max_iter=4"])
    assert first.returncode == 0, first.stderr[-3000:]
    prefix = f"s3://{bucket_name}/prefix/fastgen/toy/s3run/checkpoints"
    assert [x["url"] for x in client.list(prefix)] == [f"{prefix}/0000002.pth", f"{prefix}/0000004.pth"]
    assert not (tmp_path / "out1/fastgen/toy/s3run/checkpoints").exists()  # checkpoints live on S3 only

    # a fresh machine (new output root, nothing cached) continues from the S3 checkpoint
    second = run_train(work, tmp_path / "out2", [*s3_args, "trainer.max_iter=6"], log_level="DEBUG")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from {prefix}/0000004.pth (iteration 4)" in second.stderr
    assert client.exists(f"{prefix}/0000006.pth")

    # the S3 save/resume run equals an uninterrupted local run, bit for bit
    local = run_train(work, tmp_path / "out3", ["trainer.max_iter=6"])
    assert local.returncode == 0, local.stderr[-3000:]
    reference = torch.load(tmp_path / "out3/fastgen/toy/s3run/checkpoints/0000006.pth", weights_only=True)
    resumed = torch.load(client.cached_download(f"{prefix}/0000006.pth"), weights_only=True)
    assert resumed["iteration"] == 6 and resumed["model"].keys() == reference["model"].keys()
    for name, weights in reference["model"]["net"].items():
        assert torch.equal(resumed["model"]["net"][name], weights), name

    for result in (first, second):
        assert SECRET not in result.stdout and SECRET not in result.stderr
    for root in ("out1", "out2"):
        config_text = (tmp_path / root / "fastgen/toy/s3run/config.yaml").read_text()
        assert SECRET not in config_text and f"s3://{bucket_name}/prefix" in config_text


@pytest.mark.slow
def test_train_py_without_credentials_fails_with_one_line(moto_endpoint, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = run_train(work, tmp_path / "out", ["trainer.checkpointer.use_s3=True", "trainer.max_iter=2",
                                                "trainer.checkpointer.s3_container=s3://some-bucket/prefix"])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "no S3 credentials found" in errors[0] and "AWS_ACCESS_KEY_ID" in errors[0]
    assert "./credentials/s3.json" in errors[0]
