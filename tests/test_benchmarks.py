"""Every benchmark answers --help (its docstring) and exits 0 without measuring or training anything."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_help_answers_without_running(name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: {name}")
    first_doc_line = (BENCHMARKS / name).read_text().split('"""')[1].splitlines()[0]
    assert first_doc_line in out  # the docstring says what it measures


def test_oracle_rejects_unknown_method(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["oracle_consistency.py", "cmm"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(BENCHMARKS / "oracle_consistency.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert "unknown method(s) cmm; choose from" in capsys.readouterr().err


def test_parse_methods_defaults_to_all_and_keeps_the_given_order(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _args import parse_methods

    # no names = all (argparse on Python 3.11 rejected the empty default against `choices`)
    assert parse_methods(None, ["cm", "tcm", "scm"], []) == ("cm", "tcm", "scm")
    assert parse_methods(None, ["cm", "tcm", "scm"], ["scm", "cm"]) == ("scm", "cm")


def test_oracle_help_does_not_load_torch():
    # the oracle scripts train for minutes: their --help must not even import torch
    import subprocess

    code = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "for name in ('oracle.py', 'oracle_consistency.py', 'oracle_distribution_matching.py', 'oracle_causal.py'):\n"
        "    sys.argv = [name, '--help']\n"
        "    try:\n"
        f"        runpy.run_path({str(BENCHMARKS)!r} + '/' + name, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "torch loaded: False"
