"""LazyCall / instantiate: dotted-path storage, recursion, call-site precedence, clear errors."""

import collections
import copy
import fractions

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from fastgen.utils import InstantiationError, instantiate, locate
from fastgen.utils import LazyCall as L
from fastgen.utils.lazy import dotted_path


def add(a, b=10):
    return a + b


class Pair:
    def __init__(self, left, right=None):
        self.left, self.right = left, right


def test_lazycall_stores_dotted_string_and_kwargs():
    cfg = L(add)(a=1, b=2)
    assert isinstance(cfg, DictConfig)
    assert cfg._target_ == f"{__name__}.add"
    assert (cfg.a, cfg.b) == (1, 2)
    assert instantiate(cfg) == 3


def test_lazycall_prefers_shortest_public_path():
    cfg = L(collections.OrderedDict)()
    assert cfg._target_ == "collections.OrderedDict"
    assert dotted_path(fractions.Fraction) == "fractions.Fraction"


def test_string_target_and_editing_after_creation():
    cfg = L("fractions.Fraction")(numerator=3, denominator=4)
    cfg.denominator = 6
    assert instantiate(cfg) == fractions.Fraction(1, 2)


def test_callsite_kwargs_win_and_replaced_values_are_not_built():
    cfg = L(Pair)(left=L("this.module.does.not.exist")(), right=5)
    built = instantiate(cfg, left="given")
    assert (built.left, built.right) == ("given", 5)


def test_positional_args_pass_through():
    assert instantiate(L(add)(b=5), 2) == 7


def test_recursive_targets_inside_dicts_and_lists():
    cfg = L(Pair)(left={"inner": L(add)(a=1, b=1), "plain": [1, 2]}, right=[L(add)(a=2), 3])
    built = instantiate(cfg)
    assert built.left == {"inner": 2, "plain": [1, 2]}
    assert type(built.left["plain"]) is list  # nets get plain lists, not ListConfig
    assert built.right == [12, 3]


def test_non_target_values_returned_unchanged():
    plain = DictConfig({"a": 1})
    assert instantiate(plain) is plain
    assert instantiate(5) == 5
    assert instantiate([L(add)(a=1), 4]) == [11, 4]


def test_unknown_argument_names_target_and_argument():
    with pytest.raises(InstantiationError, match=r"add.*unexpected keyword argument 'c'"):
        instantiate(L(add)(a=1, c=3))


def test_missing_required_argument():
    with pytest.raises(InstantiationError, match=r"missing a required argument: 'a'"):
        instantiate(L(add)(b=3))


def test_missing_target_module_is_clear():
    with pytest.raises(InstantiationError, match="nonexistent_pkg_xyz.Thing"):
        instantiate(L("nonexistent_pkg_xyz.Thing")())


def test_missing_attribute_is_clear():
    with pytest.raises(InstantiationError, match="collections.NoSuchThing"):
        locate("collections.NoSuchThing")


def test_lazy_package_export_that_is_missing_names_it(tmp_path, monkeypatch):
    # a package whose lazy __getattr__ raises ImportError, like fastgen.methods before a method exists
    pkg = tmp_path / "lazy_pkg_for_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "def __getattr__(name):\n    raise ImportError(f'lazy_pkg_for_test.{name} needs a missing module')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InstantiationError, match=r"lazy_pkg_for_test\.Model is not available"):
        instantiate(L("lazy_pkg_for_test.Model")(config=None))


def test_unknown_method_name_is_clear():
    with pytest.raises(InstantiationError, match="fastgen.methods.NoSuchModel"):
        instantiate(L("fastgen.methods.NoSuchModel")(config=None))


def test_errors_inside_the_constructor_are_not_disguised():
    def boom(x):
        raise TypeError("inner failure")

    with pytest.raises(TypeError, match="inner failure"):
        instantiate(L(boom)(x=1))


def test_non_callable_target():
    with pytest.raises(InstantiationError, match="not callable"):
        instantiate(L("math.pi")())


def test_yaml_round_trip_and_deepcopy_independence():
    cfg = L(add)(a=1, b=[1, 2])
    text = OmegaConf.to_yaml(cfg)
    back = DictConfig(yaml.safe_load(text))
    assert back == cfg
    clone = copy.deepcopy(cfg)
    clone.b.append(3)
    assert list(cfg.b) == [1, 2]
    assert clone._get_flag("allow_objects") is True


def test_objects_allowed_as_values():
    marker = object()
    cfg = L(Pair)(left=marker)
    assert instantiate(cfg).left is marker


def test_lazycall_rejects_non_callable():
    with pytest.raises(TypeError, match="callable"):
        L(5)
