"""Finding 6 of issue 26 (and the client's half of 10): ``fusebox submit`` and the Python
client never follow a symbolic link to an input or to ``--out``, keep folder walks and
patterns inside the folder given, and read only regular files of a bounded size."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.batch import collect_inputs, open_results
from api.client import FuseboxClient
from breaker import InputError
from api.samples import invoice
from workers.errors import InvalidInput
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A scans folder someone else could write to, with links to secrets planted in it."""
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text(KEY)
    (tmp_path / "home" / "notes.txt").write_text("private line one\nprivate line two\n")
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    (scans / "a.png").write_bytes(invoice(1))
    (scans / "scan1.png").symlink_to(secret)
    (scans / "notes.txt").symlink_to(tmp_path / "home" / "notes.txt")
    (scans / "sub" / "deeper.png").symlink_to(secret)
    (scans / "elsewhere").symlink_to(tmp_path / "home", target_is_directory=True)
    return scans


def inputs(model: str, *args: str) -> list:
    return list(collect_inputs(model, list(args)))


def test_a_folder_walk_reads_no_linked_file(planted: Path) -> None:
    found = {Path(i.source).name: i for i in inputs("ocr", str(planted))}
    assert found["a.png"].error is None
    for name in ("scan1.png", "deeper.png"):
        assert "symbolic link" in found[name].error and found[name].content is None
    assert not any("elsewhere" in i.source for i in found.values())  # a linked folder is not entered
    assert all(KEY[:20] not in (i.error or "") for i in found.values())


def test_a_text_walk_submits_no_linked_file(planted: Path) -> None:
    found = inputs("sentiment", str(planted))
    assert [i.content for i in found if i.content] == []
    assert any("symbolic link" in (i.error or "") for i in found)


def test_globs_and_named_files_are_not_followed_either(planted: Path) -> None:
    for item in inputs("ocr", str(planted / "*.png"), str(planted / "**" / "*.png"), str(planted / "scan1.png")):
        if Path(item.source).name != "a.png":
            assert item.content is None and "symbolic link" in item.error, item
    outside = inputs("sentiment", str(planted / ".." / "home" / "*.txt"))
    assert [i.content for i in outside if i.content]  # a pattern that names another folder reads it: asked for
    escaped = inputs("ocr", str(planted / "elsewhere" / "*.png"))  # through a linked folder: not
    assert all(i.content is None for i in escaped)


def test_out_is_not_opened_through_a_link(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_text("export PATH=$PATH\n")
    out = tmp_path / "results.jsonl"
    out.symlink_to(rc)
    with pytest.raises(InputError, match="symbolic link"):
        open_results(out)
    assert rc.read_text() == "export PATH=$PATH\n"


def test_the_cli_refuses_a_linked_out_and_writes_nothing(tmp_path: Path, planted: Path, redis_url: str,
                                                          key_prefix: str) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_text("# rc\n")
    out = tmp_path / "results.jsonl"
    out.symlink_to(rc)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_KEY_PREFIX": key_prefix}
    result = subprocess.run([str(Path(sys.executable).parent / "fusebox"), "submit", str(planted), "--out", str(out),
                             "--no-wait"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "symbolic link" in result.stderr + result.stdout
    assert rc.read_text() == "# rc\n"


def test_the_client_reads_a_file_as_the_cli_does(tmp_path: Path, planted: Path, redis_url: str,
                                                 key_prefix: str) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2048)
    with FuseboxClient(Settings(redis_url=redis_url, key_prefix=key_prefix, max_image_bytes=1024)) as client:
        for path, why in ((Path("/dev/zero"), "not a regular file"), (planted / "scan1.png", "symbolic link"),
                          (big, "too large")):
            with pytest.raises(InvalidInput, match=why):
                client.submit_ocr(path)
