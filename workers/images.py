"""Turning an uploaded file into an image the OCR model can take, or a clear refusal.

Everything here runs before the breaker is asked: bad input is the caller's problem and
must never count as a model failure.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from workers.errors import InvalidInput


def _describe(data: bytes) -> str:
    head = data[:64]
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data)} bytes starting {head[:8].hex()}"
    return f"text starting {sample[:24]!r}"


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decodes ``data`` into an RGB image.

    Raises:
      InvalidInput: empty, too large (bytes or pixels: the decompression-bomb guard reads
        the header before decoding anything), not an image, truncated or corrupt.
    """
    if not data:
        raise InvalidInput("empty image: 0 bytes")
    if len(data) > max_bytes:
        raise InvalidInput(f"image too large: {len(data)} bytes > limit of {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInput(
                    f"image too large: {width}x{height} = {width * height} pixels > limit of {max_pixels}"
                )
            if width < 1 or height < 1:
                raise InvalidInput(f"image has no pixels: {width}x{height}")
            image.load()
    except InvalidInput:
        raise
    except UnidentifiedImageError:
        raise InvalidInput(f"not an image ({_describe(data)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"image refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"truncated or corrupt image: {exc}") from None
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
