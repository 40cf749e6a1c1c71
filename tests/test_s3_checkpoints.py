"""Checkpoints on S3 (moto on 127.0.0.1): sharded DCP folders saved to and resumed from S3, `keep_last` pruning
locally and on S3, and an upload failure that keeps the local checkpoint and uploads it at the next save."""

import os
from urllib.parse import urlparse

import pytest
import torch
from _fault_proxy import FaultProxy
from test_dcp_checkpointer import _model, _save, _step
from test_s3 import bucket, isolate_aws, moto_endpoint, s3_env, tiny_state  # noqa: F401  (shared moto fixtures)

from fastgen.utils import s3
from fastgen.utils.checkpointer import S3Checkpointer
from fastgen.utils.s3_dcp_checkpointer import S3DCPCheckpointer


def s3_keys(prefix) -> list[str]:
    return sorted(item["key"].split("/", 1)[-1] for item in s3.S3Client(credential_file=None).list(prefix))


def test_dcp_to_s3_round_trip_and_keep_last(bucket, tmp_path):  # noqa: F811
    model = _model(tmp_path, seed=0)
    checkpointer = S3DCPCheckpointer(f"s3://{bucket}", "run/checkpoints", local_copy_type="delete", keep_last=2)
    for it in (1, 2, 3):
        _step(model, it)
        assert _save(model, checkpointer, it) == checkpointer.url(it)
    assert [it for it, _ in checkpointer.list_checkpoints()] == [2, 3]  # keep_last=2 on S3
    assert {k.split("/")[-2] for k in s3_keys(f"s3://{bucket}/run/checkpoints")} == {"0000002", "0000003"}
    assert not os.listdir(checkpointer.save_dir)  # "delete": no local folder left

    fresh = _model(tmp_path, seed=7)
    state, where = checkpointer.load_latest(fresh)  # downloads the folder, DCP reads it into the fresh model
    assert where == checkpointer.url(3) and checkpointer.restore_state(fresh, state) == 3
    assert state["data"] == {"train": 24}
    for a, b in zip(model.net.state_dict().values(), fresh.net.state_dict().values()):
        assert torch.equal(a, b)


@pytest.fixture
def flaky_endpoint(s3_env, monkeypatch):  # noqa: F811
    endpoint = urlparse(s3_env)
    with FaultProxy((endpoint.hostname, endpoint.port), cut_after=1 << 40, faults=0) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        yield proxy


def test_failed_upload_keeps_local_copy_and_retries_at_next_save(bucket, flaky_endpoint, tmp_path):  # noqa: F811
    checkpointer = S3Checkpointer(f"s3://{bucket}", "run/single", local_copy_type="keep_latest", keep_last=2)
    flaky_endpoint.refuse = True
    local = checkpointer.save(tiny_state(1, seed=1), 1)
    assert local == s3.cache_path(checkpointer.url(1)) and os.path.isfile(local)  # kept, not deleted
    assert checkpointer.pending_uploads() == [(1, local)]
    flaky_endpoint.refuse = False
    assert checkpointer.list_checkpoints() == [(1, local)]  # a resume here still finds it
    assert checkpointer.load(local)["iteration"] == 1
    for it in (2, 3):
        assert checkpointer.save(tiny_state(it, seed=it), it) == checkpointer.url(it)
    assert checkpointer.pending_uploads() == []
    assert s3_keys(f"s3://{bucket}/run/single") == ["single/0000002.pth", "single/0000003.pth"]  # 1 uploaded, pruned
    assert [os.path.basename(p) for _, p in checkpointer.list_local_copies()] == ["0000003.pth"]


def test_failed_dcp_upload_keeps_folder_and_retries(bucket, flaky_endpoint, tmp_path):  # noqa: F811
    model = _model(tmp_path, seed=0)
    checkpointer = S3DCPCheckpointer(f"s3://{bucket}", "run/dcp", local_copy_type="keep_latest")
    flaky_endpoint.refuse = True
    folder = _save(model, checkpointer, 1)
    flaky_endpoint.refuse = False
    assert os.path.isdir(folder) and checkpointer.list_checkpoints() == [(1, folder)]
    _save(model, checkpointer, 2)
    assert [it for it, _ in checkpointer.list_checkpoints()] == [1, 2]
    assert checkpointer.list_checkpoints()[0][1] == checkpointer.url(1)  # now on S3
    assert not os.path.isdir(folder)  # keep_latest: the uploaded older folder is gone locally


def test_keep_last_prunes_local_files_and_dcp_folders(tmp_path):
    from fastgen.utils.checkpointer import Checkpointer
    from fastgen.utils.dcp_checkpointer import DCPCheckpointer

    plain = Checkpointer(str(tmp_path / "plain"), keep_last=2)
    for it in (1, 2, 3):
        plain.save(tiny_state(it, seed=it), it)
    assert [it for it, _ in plain.list_checkpoints()] == [2, 3]
    model = _model(tmp_path, seed=0)
    sharded = DCPCheckpointer(str(tmp_path / "dcp"), keep_last=1)
    for it in (1, 2):
        _save(model, sharded, it)
    assert [it for it, _ in sharded.list_checkpoints()] == [2]
    with pytest.raises(ValueError, match="keep_last must be >= 0"):
        Checkpointer(str(tmp_path), keep_last=-1)
