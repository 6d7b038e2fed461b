"""The layering contract (.importlinter): breaker/ imports nothing of workers/ or api/,
workers/ nothing of api/. Checked with import-linter on the imports as written (type-checking
imports included), so a violation fails the suite, not a review."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

importlinter_cli = pytest.importorskip("importlinter.cli", reason="import-linter is in the dev extra")

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"


def test_the_contracts_are_the_agreed_ones() -> None:
    config = configparser.ConfigParser()
    config.read(CONFIG)
    forbidden = {
        config[s]["source_modules"].split()[0]: set(config[s]["forbidden_modules"].split())
        for s in config.sections() if s.startswith("importlinter:contract:")
    }
    assert forbidden == {"breaker": {"workers", "api"}, "workers": {"api"}}


def test_every_layering_contract_is_kept(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    code = importlinter_cli.lint_imports(config_filename=str(CONFIG), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 kept, 0 broken" in out
