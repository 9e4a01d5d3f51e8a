"""Streaming FINER shards with webdataset: the rows of the ``load_finer`` views, lazily, for trainers.

:func:`stream_finer` reads WebDataset shards -- a dataset folder, local tars, brace patterns
(``test-{00000..00003}.tar``), ``hf://datasets/<repo>@<revision>/...`` and Hub ``resolve`` URLs, or
``pipe:`` commands -- and yields the rows of a view, built by the same flatten as :func:`load_finer`
(:func:`~finer_datasets.mcq.records.pair_rows` / ``question_rows``, ``trl_rows`` / ``sft_rows``):
same columns, same values, the image decoded with PIL (``decode=False``: ``{"bytes", "path"}``). The
result is a ``webdataset.DataPipeline`` (a ``torch.utils.data.IterableDataset``), so ``.map()``,
``.batched()`` and ``.with_epoch()`` work on it, and any ``DataLoader`` takes it.

* Splitting: by default each shard goes to exactly one consumer -- ``webdataset.split_by_node`` (rank
  and world size from ``torch.distributed`` or ``RANK``/``WORLD_SIZE``) then ``split_by_worker`` (the
  ``DataLoader`` worker) -- so every row is seen exactly once per epoch over all nodes and workers.
  With fewer shards than consumers use ``split_by="samples"``: every consumer reads every shard
  and keeps every n-th sample (exact too, more reading). ``split_by=None`` splits nothing.
* Shuffling (``shuffle=N``): the shard order (the same on every consumer, before splitting) and a
  buffer of N rows, from ``random.Random`` seeded by ``seed``, :meth:`FinerStream.set_epoch`, rank and
  worker: same seed and epoch, same order.
* Resampling (``resample=True``): an endless stream of shards drawn with replacement
  (``webdataset.ResampledShards``, seeded per consumer); bound an epoch with ``.with_epoch(rows)``.
* Trainers that take only ``datasets`` types (TRL, transformers' ``Trainer``):
  :meth:`FinerStream.to_iterable_dataset`; ``datasets`` and accelerate then split the shards.

Importing this module imports webdataset (and torch with it, when installed); ``import
finer_datasets`` does not.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import tarfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence
from urllib.parse import quote, unquote, urlsplit

import webdataset as wds

from finer_datasets.constants import canonical_settings, require_kind
from finer_datasets.core.card import SHARD_GLOB
from finer_datasets.core.views import IMAGE_COLUMNS, decode_image
from finer_datasets.errors import SourceError, UsageError
from finer_datasets.hub.load import LISTED_VIEWS, VIEW_KIND, VIEWS, view_rows

__all__ = ["stream_finer", "FinerStream", "shard_urls", "hub_url", "open_shard", "SPLIT_BY"]

logger = logging.getLogger(__name__)

#: how rows are shared among nodes x DataLoader workers
SPLIT_BY = ("shards", "samples", None)
_HF_URL = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<path>.+)$")
_CHUNK = 1 << 16


def hub_url(url: str) -> str:
    """The ``resolve`` URL of an ``hf://datasets/<owner>/<name>[@<revision>]/<path>`` URL on the Hub
    that ``HF_ENDPOINT`` names (revision ``main`` when none is given; a revision with ``/`` is
    written ``%2F``, as ``huggingface_hub``'s file system writes it)."""
    from huggingface_hub import constants

    match = _HF_URL.match(url)
    if match is None:
        raise UsageError(f"{url}: not a Hub dataset URL; write hf://datasets/<owner>/<name>@<revision>/<path>")
    revision = quote(unquote(match["revision"] or "main"), safe="")
    return f"{constants.ENDPOINT}/datasets/{match['repo']}/resolve/{revision}/{quote(match['path'])}"


def _expand(url: str | Path) -> list[str]:
    if isinstance(url, Path):
        return [str(url)]
    return [hub_url(u) if u.startswith("hf://") else u for u in wds.shardlists.expand_urls(url)]


def shard_urls(source: str | Path | Sequence[str | Path], split: str | None = None) -> list[str]:
    """Every shard URL of ``source``: a dataset folder (its ``data/<split>-*.tar``, in name order;
    ``split`` may be left out when the folder has one split), one URL or a list of them, each
    expanded like webdataset expands them (``{00000..00003}`` braces, ``::`` lists) and ``hf://``
    URLs turned into Hub ``resolve`` URLs."""
    if isinstance(source, (str, Path)) and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        shards = sorted(folder.glob(SHARD_GLOB.format(split=split or "*")))
        splits = sorted({p.name.rsplit("-", 1)[0] for p in shards})
        if split is None and len(splits) > 1:
            raise UsageError(f"{folder} has the splits {', '.join(splits)}: pass split=")
        if not shards:
            raise UsageError(f"{folder} has no shards {SHARD_GLOB.format(split=split or '*')}")
        return [str(p) for p in shards]
    urls = [u for item in ([source] if isinstance(source, (str, Path)) else source) for u in _expand(item)]
    if not urls:
        raise UsageError("no shard URLs given")
    return urls


class _HTTPReader(io.RawIOBase):
    """A streamed HTTP response as a readable binary file (closing it ends the connection)."""

    def __init__(self, client: Any, response: Any):
        self._client, self._response = client, response
        self._chunks = response.iter_bytes(_CHUNK)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._client.close()
        super().close()


def _http(url: str) -> BinaryIO:
    import httpx
    from huggingface_hub import constants, get_token

    headers = {}
    token = get_token()
    endpoint = urlsplit(constants.ENDPOINT)
    if token and urlsplit(url)[:2] == endpoint[:2]:  # the token goes to the Hub only (httpx drops it on redirects away)
        headers["Authorization"] = f"Bearer {token}"
    client = httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=30.0))
    try:
        response = client.send(client.build_request("GET", url, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        client.close()
        raise SourceError(f"cannot download the shard: {exc}", path=url) from exc
    if response.status_code >= 400:
        response.close()
        client.close()
        raise SourceError(f"cannot download the shard: HTTP {response.status_code}", path=url)
    return io.BufferedReader(_HTTPReader(client, response), buffer_size=_CHUNK)


def open_shard(url: str) -> BinaryIO:
    """A readable stream of one shard: ``http(s)://`` (Hub ``resolve`` URLs too, with your Hub token
    when the URL is on ``HF_ENDPOINT``) streamed with httpx, ``hf://`` through :func:`hub_url`,
    anything else (paths, ``file:``, ``pipe:COMMAND``) by ``webdataset.gopen``."""
    if url.startswith("hf://"):
        url = hub_url(url)
    if url.startswith(("http://", "https://")):
        return _http(url)
    try:
        return wds.gopen(url, "rb")
    except OSError as exc:
        raise SourceError(f"cannot open the shard: {exc.strerror or exc}", path=url) from exc


def _read_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return OSError, EOFError, tarfile.TarError, ValueError, httpx.HTTPError


def _samples(sources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The samples (``__key__``, ``__url__`` and raw members) of each shard, read by webdataset's
    tar expander; a shard that cannot be read is one :class:`SourceError` naming it."""
    for source in sources:
        url = source["url"]
        try:
            stream = open_shard(url)
            try:
                files = wds.tariterators.tar_file_expander([{"url": url, "stream": stream}])
                yield from wds.tariterators.group_by_keys(files)
            finally:
                stream.close()  # a pipe: command that failed raises here
        except _read_errors() as exc:
            reason = next((a for a in exc.args if isinstance(a, str)), None) or type(exc).__name__
            raise SourceError(f"cannot read the shard: {reason}", path=url) from exc


def _split_samples(samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    rank, world, worker, workers = wds.utils.pytorch_worker_info()
    consumer, consumers = rank * workers + worker, world * workers
    for i, sample in enumerate(samples):
        if i % consumers == consumer:
            yield sample


def _cell(data: bytes, decode: bool) -> Any:
    return decode_image(data) if decode else {"bytes": data, "path": None}


def _flatten(samples: Iterable[dict[str, Any]], *, view: str, settings: tuple[str, ...] | None,
             decode: bool) -> Iterator[dict[str, Any]]:
    """Each sample's rows of ``view`` (:func:`~finer_datasets.hub.load.load_finer`'s flatten) with its
    image; ``images``: the sample as ``load_dataset`` gives it (``__key__``, ``__url__``, ``json``, image)."""
    rows_of = None if view == "images" else view_rows(view, settings)
    listed = view in LISTED_VIEWS
    for sample in samples:
        key, url = sample["__key__"], sample["__url__"]
        try:
            record = json.loads(sample["json"])
        except KeyError:
            raise SourceError("the sample has no json member", path=url, record=key) from None
        except ValueError as exc:
            raise SourceError(f"bad JSON: {exc}", path=url, record=key, field="json") from exc
        images = {c: sample[c] for c in IMAGE_COLUMNS if c in sample}
        if rows_of is None:
            yield {"__key__": key, "__url__": url, "json": record, **{c: _cell(d, decode) for c, d in images.items()}}
            continue
        require_kind(record, VIEW_KIND[view], subject=f"{url} (sample {key})", action=f"stream_finer(..., {view!r})")
        data = next(iter(images.values()), None)
        image = None if data is None else _cell(data, decode)
        for row in rows_of(record):
            row["images" if listed else "image"] = ([image] if image is not None else []) if listed else image
            yield row


@dataclass(frozen=True)
class _Plan:
    """What a stream reads and how (picklable: ``DataLoader`` workers under ``spawn`` get a copy)."""

    urls: tuple[str, ...]
    view: str
    settings: tuple[str, ...] | None
    decode: bool
    shuffle: int
    seed: int
    resample: bool
    split_by: str | None

    def rows(self, epoch: int) -> Iterator[dict[str, Any]]:
        """The rows this consumer (rank x worker) reads in ``epoch``."""
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        if self.resample:
            stages: list[Any] = [wds.ResampledShards(list(self.urls), seed=wds.utils.make_seed(self.seed, epoch),
                                                     deterministic=True)]
        else:
            order = wds.utils.make_seed(self.seed, epoch) if self.shuffle else None  # one order on every consumer
            stages = [wds.SimpleShardList(list(self.urls), seed=order)]
            if self.split_by == "shards":
                stages += [wds.split_by_node, wds.split_by_worker]
                if rank + world * worker >= len(self.urls):  # islice by rank, then by worker
                    logger.warning("%d shards for %d nodes x %d workers: rank %d worker %d reads none (use "
                                   "split_by='samples')", len(self.urls), world, workers, rank, worker)
        stages.append(_samples)
        if self.split_by == "samples" and not self.resample:
            stages.append(_split_samples)
        stages.append(partial(_flatten, view=self.view, settings=self.settings, decode=self.decode))
        if self.shuffle:
            rng = random.Random(f"finer-stream/{self.seed}/{epoch}/{rank}/{worker}")
            stages.append(wds.shuffle(self.shuffle, initial=self.shuffle, rng=rng))
        return iter(wds.DataPipeline(*stages))


class _Source:
    """The first stage of a :class:`FinerStream`: the plan and the epoch it is at."""

    def __init__(self, plan: _Plan):
        self.plan, self.epoch = plan, 0

    def __call__(self) -> Iterator[dict[str, Any]]:
        return self.plan.rows(self.epoch)


class FinerStream(wds.DataPipeline, wds.FluidInterface):
    """The rows of a FINER view streamed from WebDataset shards (made by :func:`stream_finer`)."""

    def __init__(self, plan: _Plan):
        self._source = _Source(plan)
        super().__init__(self._source)

    @property
    def urls(self) -> list[str]:
        return list(self._source.plan.urls)

    def set_epoch(self, epoch: int) -> None:
        """Shuffle and resample as in ``epoch`` (call before each epoch, as with a
        ``DistributedSampler``; the ``DataLoader`` workers started after it get it)."""
        self._source.epoch = epoch

    def to_iterable_dataset(self) -> Any:
        """The same rows as a ``datasets.IterableDataset`` (one generator shard per URL) for
        trainers that take only ``datasets`` types (TRL, transformers' ``Trainer``): ``datasets``
        gives each ``DataLoader`` worker its shards and accelerate each process its own, so this
        stream's own splitting is off there; shuffle with its ``.shuffle(seed=, buffer_size=)``."""
        import datasets

        plan = replace(self._source.plan, split_by=None)
        return datasets.IterableDataset.from_generator(_generate, gen_kwargs={"urls": list(plan.urls),
                                                                              "plan": replace(plan, urls=())})


def _generate(urls: list[str], plan: _Plan) -> Iterator[dict[str, Any]]:
    yield from replace(plan, urls=tuple(urls)).rows(0)


def stream_finer(
    source: str | Path | Sequence[str | Path],
    view: str = "images",
    *,
    split: str | None = None,
    setting: str | Iterable[str] | None = None,
    decode: bool = True,
    shuffle: int = 0,
    seed: int = 0,
    resample: bool = False,
    split_by: str | None = "shards",
) -> FinerStream:
    """Stream the rows of ``view`` (``images``, ``pairs``, ``questions``, ``trl``, ``sft``) from the
    WebDataset shards of ``source`` (see :func:`shard_urls`); nothing is read before iteration.

    ``setting`` keeps the pairs of some settings (as in ``load_finer``); ``shuffle`` is the size of
    the row shuffle buffer (0: rows in shard order); ``split_by`` shares the rows among nodes x
    ``DataLoader`` workers (:data:`SPLIT_BY`)."""
    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
    if split_by not in SPLIT_BY:
        raise UsageError(f"split_by={split_by!r}; use one of {', '.join(map(repr, SPLIT_BY))}")
    if shuffle < 0:
        raise UsageError(f"shuffle={shuffle}: the buffer size cannot be negative")
    settings = None if setting is None else canonical_settings(setting)
    plan = _Plan(urls=tuple(shard_urls(source, split)), view=view, settings=settings, decode=decode, shuffle=shuffle,
                 seed=seed, resample=resample, split_by=split_by)
    return FinerStream(plan)
