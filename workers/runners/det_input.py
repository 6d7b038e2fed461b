"""What the text detector sees of one image: its size chosen per image, per call.

Two kinds of input need opposite treatment, and one fixed detector limit cannot serve both:

- a big page (a 6000x6000 scan) is scaled down for detection to ``det_max_side`` on its
  longer side (PaddleOCR's ``limit_type="max"``): its detector cost is bounded, recognition
  still reads crops of the full-resolution page;
- a small image (a field cut out of a form, a line crop 10-40 px high) keeps PaddleOCR's own
  rule (``limit_type="min"``: the shorter side brought up to 64 px), and first gets a plain
  margin of its own background on every side. The DB detector finds text by its contrast
  with what surrounds it: text that touches the image's edges is found in pieces or not at
  all (a tight 40 px crop read 0-60 % of its characters without one, all of them with it).

Everything between (short side >= ``SMALL_SIDE``, long side <= ``det_max_side``) reaches the
detector as it is: ``limit_type="min"`` with 64 leaves it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

#: PaddleOCR's own rule for small inputs (its OCR pipeline's defaults): the detector's input
#: has at least this many pixels on its shorter side.
MIN_SIDE = 64
#: Images whose shorter side is under this many pixels get a margin before detection.
SMALL_SIDE = 128


@dataclass(frozen=True)
class DetectorInput:
    """One image as the pipeline is given it.

    Parameters:
      image: the (maybe padded) image.
      offset: (x, y) of the original image's top-left corner inside ``image``.
      limits: the ``predict()`` keyword arguments that size it for the detector.
    """

    image: Image.Image
    offset: tuple[int, int] = (0, 0)
    limits: dict[str, Any] = field(default_factory=dict)


def background(image: Image.Image) -> tuple[int, ...]:
    """The colour of the image's border (per-channel median of its edge pixels): the margin's
    colour, so that a crop of a grey or coloured form is padded with its own paper."""
    pixels = np.asarray(image.convert("RGB"))
    edges = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return tuple(int(v) for v in np.median(edges, axis=0))


def detector_input(image: Image.Image, det_max_side: int | None) -> DetectorInput:
    """How ``image`` (RGB) is handed to the pipeline.

    Parameters:
      image: the image, already in the pixels the runner reads it at.
      det_max_side: longest side the detector sees; None keeps PaddleOCR's own bound (4000).
    """
    offset = (0, 0)
    short = min(image.size)
    if short < SMALL_SIDE:
        margin = max(short, 4)  # as much again as the crop is high: measured best of 1/4, 1/2, 1x
        padded = Image.new("RGB", (image.width + 2 * margin, image.height + 2 * margin), background(image))
        padded.paste(image, (margin, margin))
        image, offset = padded, (margin, margin)
    if det_max_side is not None and max(image.size) > det_max_side:  # a big page, or a very long strip
        return DetectorInput(image, offset, {"text_det_limit_type": "max", "text_det_limit_side_len": det_max_side})
    return DetectorInput(image, offset, {"text_det_limit_type": "min", "text_det_limit_side_len": MIN_SIDE})
