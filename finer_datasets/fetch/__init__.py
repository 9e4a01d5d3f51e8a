"""Fetching source images from their URLs into a verified, resumable on-disk cache.

Sources such as Pixmo-cap list third-party image URLs, many of which have gone dead; a builder
fetches them itself with::

    from finer_datasets.fetch import fetch_images, ImageCache

    report = fetch_images(urls, "cache/pixmo-images", concurrency=64, per_host=4)
    print(report.summary())                  # counts by reason, dead-URL rate
    with ImageCache("cache/pixmo-images") as cache:
        entry = cache.get(url)               # CacheEntry: status, reason, sha256, size, format, width, height
        data = cache.read(url)               # the verified bytes, or None

Every URL ends as exactly one index row, ``ok`` or ``dead`` with one of these reasons:

    http_<code>         a final HTTP status (404, 410, 403, ...) or a transient one that outlived the retries
    timeout             connect/read timeout or the per-attempt ``deadline`` (whole body), after the retries
    connection          refused, reset or DNS failure before a response, after the retries
    too_many_redirects  more than ``max_redirects`` hops (redirect loops end here)
    invalid_url         not an http(s) URL
    too_large           body (or its Content-Length) above ``max_bytes``; the download is abandoned
    not_an_image        not decodable and markup or declared non-image (HTML error page sent with 200)
    corrupt             claims to be an image but does not fully decode, or the body stopped short
    too_many_pixels     width x height above ``max_pixels`` (decompression bombs), checked before decoding
    private_address     the host (of the URL or a redirect) resolves to a loopback, link-local, private,
                        multicast, reserved or unspecified address: refused without a request
                        (``allow_private_addresses``; see :mod:`finer_datasets.fetch.address`)
    request_error       any other error from httpx

The bytes decide, not the Content-Type: a fully decodable image sent as ``text/plain`` or
``application/octet-stream`` is accepted (see :mod:`finer_datasets.fetch.verify`).

Modules: ``fetcher`` (``fetch_images``, ``FetchReport``), ``cache`` (``ImageCache``, ``CacheEntry``),
``verify`` (``check_image``), ``address`` (``AddressPolicy``: which addresses a fetch may reach),
``politeness`` (per-host gate, backoff, ``Retry-After``), ``transport`` (``default_transport``: hosts
spread over small connection pools, see its docstring for why). Local test server with fault
routes: :mod:`finer_datasets.testing.image_server`.
"""

from __future__ import annotations

from finer_datasets.fetch.address import REFUSED, AddressPolicy, AddressRefused
from finer_datasets.fetch.cache import CacheBusyError, CacheEntry, ImageCache
from finer_datasets.fetch.fetcher import (
           TRANSIENT_REASONS,
           FetchReport,
           afetch_images,
           fetch_images,
)
from finer_datasets.fetch.transport import ShardedTransport, default_transport
from finer_datasets.fetch.verify import check_image

__all__ = [
           "REFUSED",
           "TRANSIENT_REASONS",
           "AddressPolicy",
           "AddressRefused",
           "CacheBusyError",
           "CacheEntry",
           "FetchReport",
           "ImageCache",
           "ShardedTransport",
           "afetch_images",
           "check_image",
           "default_transport",
           "fetch_images",
]
