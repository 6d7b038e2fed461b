"""The inputs of ``fusebox submit`` (and the client's files): named files, folders walked,
glob patterns, each read one at a time, each refused with a reason rather than read when it
should not be.

Safe to point at a folder someone else can write to: a symbolic link is never followed
(files are opened with ``O_NOFOLLOW``, folders walked without following links, so a planted
``scan1.png -> ~/.ssh/id_rsa`` is a rejected input, not a leaked key), every file found by a
walk or a pattern lies inside the folder given, and only regular files are read (a FIFO
would block forever, ``/dev/zero`` never ends); their size is checked on the open
descriptor before a byte is read.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from workers import hashing
from workers.models import spec_for
from workers.settings import Settings

DEFAULT_MAX_IMAGE_BYTES: int = Settings.model_fields["max_image_bytes"].default

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
TEXT_SUFFIXES = {".txt", ".jsonl"}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_LINK = "a symbolic link: not followed (name the file itself)"


@dataclass
class Item:
    """One input: where it came from, and its content or why it has none."""

    source: str
    content: bytes | str | None = None
    error: str | None = None

    def content_hash(self, model: str) -> str:
        return hashing.content_hash(model, self.content or b"")


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _files(arg: str, suffixes: set[str]) -> Iterator[Path | Item]:
    path = Path(arg)
    if path.is_dir():
        found = False
        for file in _walk(path, suffixes):
            found = True
            yield file
        if not found:
            yield Item(arg, error=f"folder has no {'/'.join(sorted(suffixes))} files")
    elif path.is_symlink():
        yield Item(arg, error=_LINK)
    elif path.exists():
        yield path
    elif _is_glob(arg):
        root = _glob_root(arg)
        matches = sorted(Path(p) for p in glob.glob(arg, recursive=True)
                         if os.path.islink(p) or os.path.isfile(p))
        if not matches:
            yield Item(arg, error="no file matches this pattern")
        for match in matches:
            yield _checked(match, root)
    else:
        yield Item(arg, error="no such file or folder")


def _walk(folder: Path, suffixes: set[str]) -> Iterator[Path]:
    """The folder's files with one of ``suffixes``, folder by folder in name order, as they
    are listed (no list of the whole tree first: a huge folder starts at once)."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):  # a linked folder is listed in dirs, and not entered
            candidate = Path(root) / name
            if candidate.suffix.lower() in suffixes and (candidate.is_symlink() or candidate.is_file()):
                yield _checked(candidate, folder)


def _glob_root(pattern: str) -> Path:
    """The folder a pattern searches: its path up to the first part with a wildcard."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if _is_glob(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _checked(found: Path, root: Path) -> Path | Item:
    """``found`` if it is no symbolic link and lies inside ``root`` (its folder resolved:
    a linked folder on the way, or ``..`` in a pattern, would lead elsewhere)."""
    if found.is_symlink():
        return Item(str(found), error=_LINK)
    where, top = os.path.realpath(found.parent), os.path.realpath(root)
    if os.path.commonpath([where, top]) != top:
        return Item(str(found), error=f"outside {root}: not read")
    return found


def _why(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(path: Path) -> tuple[IO[bytes], int] | Item:
    """``path`` opened for reading, with its size, if it is a regular file.

    Opened without blocking and checked on the open descriptor: a FIFO named ``scan.png``
    would block ``open()`` itself until a writer came (forever, whatever ``--timeout``
    says), and checking the name first would leave a window to swap the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW)
    except OSError as exc:
        if os.path.islink(path):  # ELOOP from O_NOFOLLOW
            return Item(str(path), error=_LINK)
        return Item(str(path), error=f"cannot read: {_why(exc)}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return Item(str(path), error=f"not a regular file ({_kind(info.st_mode)}): only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except OSError as exc:
        os.close(fd)
        return Item(str(path), error=f"cannot read: {_why(exc)}")


def image_item(path: Path, max_bytes: int) -> Item:
    """One image file, its size checked before a byte is read."""
    opened = _open_regular(path)
    if isinstance(opened, Item):
        return opened
    stream, size = opened
    with stream:
        if size > max_bytes:
            return Item(str(path), error=f"file too large: {size} bytes > limit of {max_bytes} (FUSEBOX_MAX_IMAGE_BYTES)")
        try:
            data = stream.read(max_bytes + 1)  # bounded even if the file grows meanwhile
        except OSError as exc:
            return Item(str(path), error=f"cannot read: {_why(exc)}")
    if len(data) > max_bytes:
        return Item(str(path), error=f"file too large: more than {max_bytes} bytes (FUSEBOX_MAX_IMAGE_BYTES)")
    return Item(str(path), data)


def _skip_line(stream: IO[bytes]) -> None:
    """Reads past the rest of an over-long line, in bounded pieces."""
    while True:
        more = stream.readline(1 << 20)
        if not more or more.endswith(b"\n"):
            return


def _text_items(path: Path, max_line_bytes: int) -> Iterator[Item]:
    """The texts of one ``.txt`` (a line each) or ``.jsonl`` file, read a line at a time
    (a 300 MB file costs one line of memory, and an absurd line is cut off unread). A
    file in another encoding than UTF-8 is rejected as a whole from its first bad line;
    a file without a single text is rejected too, as an empty folder is."""
    opened = _open_regular(path)
    if isinstance(opened, Item):
        yield opened
        return
    stream, _ = opened
    jsonl = path.suffix.lower() == ".jsonl"
    texts = 0
    with stream:
        number = 0
        while True:
            try:
                raw = stream.readline(max_line_bytes + 1)
            except OSError as exc:
                yield Item(str(path), error=f"cannot read: {_why(exc)}")
                return
            if not raw:
                break
            number += 1
            source = f"{path}:{number}"
            texts += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                _skip_line(stream)
                yield Item(source, error=f"line longer than {max_line_bytes} bytes")
                continue
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield Item(str(path), error=f"not UTF-8 text (line {number}: {exc.reason} at byte {exc.start})")
                return
            if not line.strip():
                texts -= 1
                continue
            if not jsonl:
                yield Item(source, line.strip())
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Item(source, error=f"not JSON: {exc.msg}")
                continue
            if isinstance(value, dict) and isinstance(value.get("text"), str):
                yield Item(source, value["text"])
            elif isinstance(value, str):
                yield Item(source, value)
            else:
                yield Item(source, error='each JSONL line must be a JSON string or an object with a "text" string')
    if not texts:
        yield Item(str(path), error="file has no texts (empty, or only blank lines)")


def collect_inputs(
    model: str, args: list[str], max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, exclude: Path | None = None
) -> Iterator[Item]:
    """Every input named by ``args``, in order, read one at a time as the caller goes (a
    folder of 100 000 images starts at once and stays flat in memory); unreadable ones as
    items with an error.

    Parameters:
      model: the model; image models read image files, text models ``.txt``/``.jsonl``.
      args: files, folders, glob patterns.
      max_image_bytes: image files larger than this are rejected without being read.
      exclude: never an input (the results file, which may lie in a folder being
        submitted and grows while it is walked).
    """
    spec = spec_for(model)
    image_model = spec.input == "image"
    # Room for a text at its longest limit, even with every character JSON-escaped.
    max_line_bytes = 8 * spec.max_text_chars + 1024
    skip = exclude.resolve() if exclude is not None else None
    for arg in args:
        for found in _files(arg, IMAGE_SUFFIXES if image_model else TEXT_SUFFIXES):
            if skip is not None and isinstance(found, Path) and found.resolve() == skip:
                continue
            if isinstance(found, Item):
                yield found
            elif image_model:
                yield image_item(found, max_image_bytes)
            else:
                yield from _text_items(found, max_line_bytes)
