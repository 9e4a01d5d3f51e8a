"""Cheap structural checks of source images (the bytes are shipped as they are, never re-encoded)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

__all__ = ["ImageInfo", "inspect_image", "IMAGE_EXTENSIONS"]

# file suffix -> WebDataset member extension
IMAGE_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}
_FORMATS = {"jpg": "JPEG", "png": "PNG"}
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class ImageInfo:
    extension: str
    width: int
    height: int


def inspect_image(data: bytes, suffix: str) -> ImageInfo:
    """Check that ``data`` is a complete JPEG/PNG matching ``suffix``; raise ``ValueError`` if not.

    Parses the header with Pillow and checks the end marker (JPEG ``FFD9``, PNG ``IEND``), which
    catches truncated and foreign files without decoding every pixel.
    """
    extension = IMAGE_EXTENSIONS.get(suffix.lower())
    if extension is None:
        raise ValueError(f"unsupported image type {suffix!r} (expected .jpg, .jpeg or .png)")
    if not data:
        raise ValueError("image file is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc
    if fmt != _FORMATS[extension]:
        raise ValueError(f"file content is {fmt}, but its name says {extension}")
    tail = data[-64:].rstrip(b"\0")
    if extension == "jpg" and not tail.endswith(b"\xff\xd9"):
        raise ValueError("JPEG data is truncated (no end-of-image marker)")
    if extension == "png" and not tail.endswith(_PNG_END):
        raise ValueError("PNG data is truncated (no IEND chunk)")
    return ImageInfo(extension, width, height)
