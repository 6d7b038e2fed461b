"""Images for the tests, rendered with Pillow; and files that are images only in name."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CJK_CANDIDATES = [
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
]


def cjk_font_path() -> str | None:
    for path in CJK_CANDIDATES:
        if Path(path).exists():
            return path
    if shutil.which("fc-match"):
        out = subprocess.run(["fc-match", "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout and Path(out.stdout).exists() and "DejaVu" not in out.stdout:
            return out.stdout
    return None


def render(lines: list[str], size: tuple[int, int] = (1000, 600), font_size: int = 36, cjk: bool = False) -> bytes:
    """A white page with ``lines`` in black, as PNG bytes."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    if cjk:
        path = cjk_font_path()
        if path is None:
            raise LookupError("no CJK font installed (apt-get install fonts-wqy-microhei)")
        font = ImageFont.truetype(path, font_size)
    else:
        font = ImageFont.load_default(size=font_size)  # Pillow's bundled FreeType font
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * int(font_size * 2.2)), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` in a few dozen bytes: a decompression bomb's
    calling card. Only the header is real."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def big_blank_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height), 1).save(out, "PNG")
    return out.getvalue()
