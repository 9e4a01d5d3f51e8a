"""Checking downloaded bytes: is this a whole, decodable raster image of a sane size?

The bytes decide, not the ``Content-Type`` header: many image hosts (S3, CDNs) send images as
``application/octet-stream`` or ``binary/octet-stream``, so a body that Pillow identifies and fully
decodes is accepted whatever its declared type (the type is recorded in the index). The header only
chooses the reason when decoding fails: a body that is markup (an HTML error page sent with status
200, SVG) or that is declared as something other than ``image/*`` is ``not_an_image``; a body that
claims to be an image but cannot be decoded completely is ``corrupt``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from struct import error as struct_error  # Pillow raises it for some short headers

from PIL import Image, UnidentifiedImageError

__all__ = ["Verdict", "check_image", "default_max_pixels"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`check_image`: ``reason`` is None for a usable image."""

    reason: str | None
    sha256: str
    size: int
    format: str | None = None
    width: int | None = None
    height: int | None = None


def default_max_pixels() -> int:
    """Pillow's own limit, ``Image.MAX_IMAGE_PIXELS`` (about 89 megapixels unless changed)."""
    return int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def _looks_like_markup(body: bytes) -> bool:
    start = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<", b"{", b"[")) or b"<html" in start


def _declared_image(content_type: str | None) -> bool:
    if not content_type:
        return True  # no claim either way: give the bytes the benefit of the doubt
    main = content_type.split(";", 1)[0].strip().lower()
    return main.startswith("image/") or main in ("application/octet-stream", "binary/octet-stream")


def check_image(body: bytes, content_type: str | None = None, *, max_pixels: int | None = None) -> Verdict:
    """Identify and fully decode ``body`` (``Image.load()``); never raises for bad bytes.

    Reasons: ``not_an_image`` (unidentifiable and markup or declared non-image), ``corrupt``
    (declared or identified as an image but the decode fails, e.g. truncated), ``too_many_pixels``
    (width x height above ``max_pixels``, default :func:`default_max_pixels`, checked before any
    pixel is decoded; Pillow's own ``DecompressionBombError`` lands here too).
    """
    digest = hashlib.sha256(body).hexdigest()
    limit = default_max_pixels() if max_pixels is None else max_pixels
    if not body:
        return Verdict("not_an_image", digest, 0)
    try:
        with Image.open(io.BytesIO(body)) as img:
            fmt, (width, height) = img.format, img.size
            if width * height > limit:
                return Verdict("too_many_pixels", digest, len(body), fmt, width, height)
            img.load()
    except Image.DecompressionBombError:
        return Verdict("too_many_pixels", digest, len(body))
    except UnidentifiedImageError:
        markup = _looks_like_markup(body) or not _declared_image(content_type)
        return Verdict("not_an_image" if markup else "corrupt", digest, len(body))
    except (OSError, ValueError, SyntaxError, EOFError, struct_error, MemoryError):
        # truncated data ("image file is truncated"), broken chunks/CRCs, bad headers
        return Verdict("corrupt", digest, len(body))
    return Verdict(None, digest, len(body), fmt, width, height)

