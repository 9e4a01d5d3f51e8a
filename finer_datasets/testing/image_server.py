"""A local image server with fault routes, for tests, the sample build and ``bench/fetch.py``.

:class:`ImageServer` listens on 127.0.0.1 only (a background thread, HTTP/1.1 keep-alive) and
serves the files of one folder plus routes that misbehave the way image hosts do::

    /files/<name>                  the file (content type from its suffix)
    /status/<code>                 that status code with a short text body
    /flaky/<n>/<name>              500 for the first n requests to this path, then the file
    /ratelimit/<seconds>/<name>    429 with ``Retry-After: <seconds>`` on the first request, then the file
    /slow/<name>                   headers at once, then one byte every ``slow_interval`` seconds
    /truncated/<name>              Content-Length 1000 larger than the bytes sent, then the connection closes
    /cut/<name>                    the first half of the file, with a matching Content-Length (a damaged image)
    /html                          200 with an HTML error page (text/html)
    /redirect/<n>/<name>           a chain of n 302 redirects ending at /files/<name>
    /to/<percent-encoded URL>      a 302 redirect to that URL (any host: another server, 169.254.169.254, ...)
    /stall/<seconds>               no answer for <seconds> s, then a 404 (a server that never sends its headers)
    /loop                          a 302 to itself, forever
    /huge/<nbytes>                 <nbytes> zeros declared image/jpeg, with a Content-Length
    /huge-unsized/<nbytes>         the same without a Content-Length (the body ends when the connection closes)
    /bomb.png                      a ~30 kB PNG declaring 16000 x 16000 pixels (a decompression bomb)
    /as/<type>/<subtype>/<name>    the file served with that content type (e.g. application/octet-stream)

A request in absolute form (``GET http://any.host/files/a.jpg``, as sent to an HTTP proxy) is
served as its path, so tests can point ``HTTP_PROXY`` at the server. It records what it saw: ``requests`` (a Counter of paths), ``log`` (time, host, path) and the
peak number of requests in flight per host (the ``Host`` header without its port) and overall. A
request counts as in flight from its arrival until its response starts, so a client that waits
for a whole response before starting the next one can never be over-counted. ``latency`` adds a
sleep to every request, inside that window.

:class:`LoopbackTransport` lets tests and benchmarks use many host names with one server: it
sends requests for ``*.test`` hosts (a TLD reserved for testing, RFC 2606) to 127.0.0.1 with the
``Host`` header unchanged, and refuses every other non-loopback host, so nothing leaves the machine.
"""

from __future__ import annotations

import mimetypes
import struct
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ImageServer", "LoopbackTransport", "decompression_bomb_png", "serve"]

_HTML = b"<!DOCTYPE html><html><head><title>Not Found</title></head><body>Image not available</body></html>"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def decompression_bomb_png(width: int = 16000, height: int = 16000) -> bytes:
    """A valid 1-bit greyscale PNG of ``width x height`` black pixels, compressed to a few dozen kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class ImageServer:
    """Serve ``root`` and the fault routes on 127.0.0.1 (``with ImageServer(folder) as server:``)."""

    def __init__(self, root: str | Path, *, port: int = 0, latency: float = 0.0, slow_interval: float = 0.5):
        self.root = Path(root)
        self.latency, self.slow_interval = latency, slow_interval
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []
        self.peak_per_host: Counter[str] = Counter()
        self.peak_total = 0
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._bomb = decompression_bomb_png()
        server = ThreadingHTTPServer(("127.0.0.1", port), self._handler(), bind_and_activate=False)
        server.request_queue_size = 256
        server.daemon_threads = True
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="image-server",
                                        daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of ``path`` (``"/files/a.jpg"``); a ``*.test`` host needs :class:`LoopbackTransport`."""
        return f"http://{host}:{self.port}{path}"

    def reset(self) -> None:
        """Forget every request seen so far."""
        with self._lock:
            self.requests.clear()
            self.log.clear()
            self.peak_per_host.clear()
            self.peak_total = 0

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- bookkeeping -------------------------------------------------------------------------
    def _arrive(self, host: str, path: str) -> int:
        with self._lock:
            self.requests[path] += 1
            self.log.append((time.monotonic(), host, path))
            self._in_flight[host] += 1
            self.peak_per_host[host] = max(self.peak_per_host[host], self._in_flight[host])
            self.peak_total = max(self.peak_total, sum(self._in_flight.values()))
            return self.requests[path]

    def _leave(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (it gave up on a slow or huge body)

            def do_GET(self) -> None:
                target = self.path
                if target.startswith(("http://", "https://")):  # absolute form: we are someone's proxy
                    target = "/" + target.split("://", 1)[1].split("/", 1)[-1]
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                path = target.split("?", 1)[0]
                n = outer._arrive(host, path)
                left = False
                try:
                    if outer.latency:
                        time.sleep(outer.latency)
                    outer._leave(host)
                    left = True
                    self._route(path, n)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    if not left:
                        outer._leave(host)

            # --- responses -------------------------------------------------------------------
            def _send(self, status: int, body: bytes, ctype: str = "text/plain",
                      headers: dict[str, str] | None = None, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _file(self, name: str) -> tuple[bytes, str] | None:
                target = (outer.root / name).resolve()
                if outer.root.resolve() not in target.parents or not target.is_file():
                    self._send(404, b"not found")
                    return None
                return target.read_bytes(), mimetypes.guess_type(target.name)[0] or "application/octet-stream"

            def _route(self, path: str, n: int) -> None:
                parts = path.strip("/").split("/")
                head, rest = parts[0], parts[1:]
                if head == "files" and rest:
                    found = self._file("/".join(rest))
                    if found:
                        self._send(200, found[0], found[1])
                elif head == "status" and len(rest) == 1 and rest[0].isdigit():
                    self._send(int(rest[0]), f"status {rest[0]}".encode())
                elif head == "flaky" and len(rest) >= 2 and rest[0].isdigit():
                    if n <= int(rest[0]):
                        self._send(500, b"internal error")
                    elif found := self._file("/".join(rest[1:])):
                        self._send(200, found[0], found[1])
                elif head == "ratelimit" and len(rest) >= 2:
                    if n == 1:
                        self._send(429, b"slow down", headers={"Retry-After": rest[0]})
                    elif found := self._file("/".join(rest[1:])):
                        self._send(200, found[0], found[1])
                elif head == "slow" and rest:
                    if found := self._file("/".join(rest)):
                        self._send(200, b"", found[1], length=len(found[0]))
                        for i in range(len(found[0])):
                            self.wfile.write(found[0][i:i + 1])
                            self.wfile.flush()
                            time.sleep(outer.slow_interval)
                elif head == "truncated" and rest:
                    if found := self._file("/".join(rest)):
                        self.close_connection = True
                        self._send(200, found[0], found[1], length=len(found[0]) + 1000)
                elif head == "cut" and rest:
                    if found := self._file("/".join(rest)):
                        self._send(200, found[0][: len(found[0]) // 2], found[1])
                elif head == "html":
                    self._send(200, _HTML, "text/html; charset=utf-8")
                elif head == "redirect" and len(rest) >= 2 and rest[0].isdigit():
                    hops = int(rest[0])
                    name = "/".join(rest[1:])
                    target = f"/redirect/{hops - 1}/{name}" if hops > 1 else f"/files/{name}"
                    self._send(302, b"", headers={"Location": target})
                elif head == "to" and len(rest) == 1:
                    self._send(302, b"", headers={"Location": urllib.parse.unquote(rest[0])})
                elif head == "stall" and len(rest) == 1 and rest[0].replace(".", "", 1).isdigit():
                    time.sleep(float(rest[0]))
                    self._send(404, b"stalled")
                elif head == "loop":
                    self._send(302, b"", headers={"Location": "/loop"})
                elif head in ("huge", "huge-unsized") and len(rest) == 1 and rest[0].isdigit():
                    self._huge(int(rest[0]), sized=head == "huge")
                elif head == "bomb.png":
                    self._send(200, outer._bomb, "image/png")
                elif head == "as" and len(rest) >= 3:
                    if found := self._file("/".join(rest[2:])):
                        self._send(200, found[0], f"{rest[0]}/{rest[1]}")
                else:
                    self._send(404, b"no such route")

            def _huge(self, size: int, *, sized: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                if sized:
                    self.send_header("Content-Length", str(size))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                block = b"\x00" * 65536
                sent = 0
                while sent < size:
                    piece = block[: min(len(block), size - sent)]
                    self.wfile.write(piece)
                    sent += len(piece)

        return Handler


def serve(root: str | Path, *, latency: float = 0.0, ready: Any = None) -> None:
    """Run an :class:`ImageServer` in this process until it is killed (benchmarks run it apart, so
    the server does not share the client's interpreter lock); ``ready.put(port)`` once it listens."""
    with ImageServer(root, latency=latency) as server:
        if ready is not None:
            ready.put(server.port)
        threading.Event().wait()


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Send ``*.test`` hosts to 127.0.0.1 (``Host`` header kept); refuse any other non-loopback host."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None):
        self.inner = inner or httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host.endswith(".test"):
            request = httpx.Request(request.method, request.url.copy_with(host="127.0.0.1"),
                                    headers=request.headers, stream=request.stream, extensions=request.extensions)
        elif host not in _LOOPBACK:
            raise httpx.ConnectError(f"LoopbackTransport refuses non-local host {host!r}", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
