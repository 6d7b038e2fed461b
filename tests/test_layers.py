"""The layering contract (.importlinter): breaker/ imports nothing of workers/ or api/,
workers/ nothing of api/. Checked with import-linter on the imports as written (type-checking
imports included), so a violation fails the suite, not a review."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
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


def test_every_layering_contract_is_kept() -> None:
    # In a process of its own: import-linter configures logging when it runs (dictConfig),
    # which would disable the loggers of modules the rest of the suite checks with caplog.
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(CONFIG)!r}, no_cache=True))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout
