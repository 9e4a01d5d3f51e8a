"""Source image checks: every image is fully decoded once during a build (its bytes are shipped
as they are, never re-encoded), so an image that would fail in ``load_dataset`` fails the build
instead, with a message naming the file."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from finer_datasets.core.reader import ShardMember
from finer_datasets.core.source import read_regular

__all__ = ["ImageInfo", "inspect_image", "read_image", "IMAGE_EXTENSIONS", "MAX_PIXELS", "MAX_IMAGE_BYTES"]

# file suffix -> WebDataset member extension
IMAGE_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}
_FORMATS = {"jpg": "JPEG", "png": "PNG"}
#: largest image accepted (Pillow's decompression-bomb limit, 89.5 megapixels)
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
#: largest image file read (an uncompressed 16-bit RGBA image of MAX_PIXELS is about 716 MB)
MAX_IMAGE_BYTES = 1 << 30


@dataclass(frozen=True)
class ImageInfo:
    extension: str
    width: int
    height: int


def inspect_image(data: bytes, suffix: str, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Check that ``data`` is a complete JPEG/PNG matching ``suffix`` by decoding every pixel.

    Raises ``ValueError`` with a one-line reason: unsupported type, empty, not an image, format
    different from the name, more than ``max_pixels`` pixels (checked from the header, before
    decoding), or pixel data that does not decode (truncated or missing). Bytes after the end of
    the image (e.g. after a JPEG's EOI marker) are fine, as they are for every decoder.
    """
    extension = IMAGE_EXTENSIONS.get(suffix.lower())
    if extension is None:
        raise ValueError(f"unsupported image type {suffix!r} (expected .jpg, .jpeg or .png)")
    if not data:
        raise ValueError("image file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                if fmt != _FORMATS[extension]:
                    raise ValueError(f"file content is {fmt}, but its name says {extension}")
                if width * height > max_pixels:
                    raise ValueError(f"{width}x{height} pixels is more than the limit of {max_pixels:,} "
                                     "(a decompression bomb, or an image far too large for a benchmark)")
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"too many pixels (more than {max_pixels:,})") from exc
        except UnidentifiedImageError as exc:
            raise ValueError("not a readable image (unknown format)") from exc
        except (OSError, SyntaxError, EOFError) as exc:
            raise ValueError(f"pixel data does not decode ({str(exc).strip() or type(exc).__name__})") from exc
    return ImageInfo(extension, width, height)


def read_image(path: Path | ShardMember, root: Path | None = None) -> tuple[bytes, ImageInfo]:
    """Read and fully check an image file; ``OSError`` for unreadable files, ``ValueError`` for bad
    content or a file over :data:`MAX_IMAGE_BYTES` (callers turn both into a
    :class:`~finer_datasets.errors.SourceError` naming the record). Only a regular file is read,
    and with ``root`` only one that stays inside that folder: anything else is a ``SourceError``
    naming the file (:func:`finer_datasets.core.source.refused`), found before it is opened."""
    if isinstance(path, ShardMember):  # an image stored in a built folder's shard (a source that is one)
        if path.size > MAX_IMAGE_BYTES:
            raise ValueError(f"file larger than the limit of {MAX_IMAGE_BYTES:,} bytes")
        return (data := path.read_bytes()), inspect_image(data, path.suffix)
    try:
        data = read_regular(path, root, limit=MAX_IMAGE_BYTES)
    except IsADirectoryError as exc:
        raise ValueError("is a folder, not an image file") from exc
    return data, inspect_image(data, path.suffix)
