"""Improved precision/recall on feature sets whose answer is known: mode dropping, blur, disjoint sets."""

import pytest
import torch

from fastgen.metrics import precision_recall
from fastgen.metrics.precision_recall import _inside, knn_radii

CENTRES = 10.0 * torch.eye(8, dtype=torch.float64)  # 8 modes, 10 apart in 8-d


def _modes(n, modes, std=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    which = torch.tensor(modes)[torch.randint(len(modes), (n,), generator=g)]
    return CENTRES[which] + std * torch.randn(n, 8, generator=g, dtype=torch.float64)


def test_identical_sets_score_one():
    x = _modes(300, range(8))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}


def test_mode_dropping_keeps_precision_and_halves_recall():
    real = _modes(800, range(8), seed=0)
    same = precision_recall(real, _modes(800, range(8), seed=1))  # a fresh draw of the same law: the baseline
    dropped = precision_recall(real, _modes(800, range(4), seed=1))  # sharp samples of half of the modes
    assert same["precision"] > 0.8 and same["recall"] > 0.8
    assert abs(dropped["precision"] - same["precision"]) < 0.05
    assert 0.4 < dropped["recall"] / same["recall"] < 0.6


def test_blurred_samples_lose_precision_not_recall():
    real = _modes(800, range(8), seed=0)
    fake = _modes(800, range(8), std=2.0, seed=1)  # every mode, 4x too wide
    pr = precision_recall(real, fake)
    assert pr["precision"] < 0.3 and pr["recall"] > 0.9


def test_disjoint_sets_score_zero_and_chunks_do_not_matter():
    real, fake = _modes(200, range(8)), _modes(200, range(8)) + 100.0
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}
    x, y = _modes(300, range(8), seed=2), _modes(250, range(3), seed=3)
    torch.testing.assert_close(knn_radii(x, 3, chunk=7), knn_radii(x, 3))
    assert torch.equal(_inside(y, x, knn_radii(x, 3), chunk=11), _inside(y, x, knn_radii(x, 3)))
    # the radius is the distance to the k-th *other* point
    line = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    assert knn_radii(line, 1).tolist() == [1.0, 1.0, 2.0, 4.0]


def test_bad_input_is_named():
    x = _modes(10, range(8))
    with pytest.raises(ValueError, match="k must be in"):
        precision_recall(x, x, k=10)
    with pytest.raises(ValueError, match="differ in dimension"):
        precision_recall(x, x[:, :4])
    with pytest.raises(ValueError, match=r"fake must be a \[N, D\]"):
        precision_recall(x, x[0])
