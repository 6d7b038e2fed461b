"""The content hash: SHA-256 (hex) of an input's parts, the one way fusebox names content
(uploaded payloads, the result cache's key, a batch's input hashes)."""

from __future__ import annotations

import hashlib


def content_hash(*parts: bytes | str) -> str:
    """SHA-256 (hex) of ``parts``, each text UTF-8 encoded, with a NUL byte between parts (so
    that ``("ab", "c")`` and ``("a", "bc")`` differ).

    Parameters:
      parts: what makes the content what it is, in a fixed order.
    """
    h = hashlib.sha256()
    for i, part in enumerate(parts):
        if i:
            h.update(b"\0")
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()
