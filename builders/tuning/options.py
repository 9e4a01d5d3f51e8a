"""The options of a FINER-Tuning build: command line, checks, and what the manifest records."""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from finer_datasets.errors import SourceError, UsageError
from finer_datasets.preference.configs import DEFAULT_PRESET, PRESETS, VALIDATION_RATIO
from finer_datasets.preference.construct import QUERIES, SAMPLINGS, TYPES, Selection
from finer_datasets.preference.templates import DEFAULT_TEMPLATES, TEMPLATE_SETS

from .category import CATEGORIES, DEFAULT_KEEP

__all__ = ["FETCH_TIMEOUT", "TuningOptions", "add_arguments", "options_from_args", "parse_options", "parse_part",
           "positive", "read_exclusions"]

#: seconds one image request may take in all (connect, first byte, whole body), unless --fetch-timeout
FETCH_TIMEOUT = 30.0
#: the numeric fetch options: option -> (fetch_outcomes keyword, type)
_FETCH_NUMBERS = {"fetch_concurrency": ("concurrency", int), "fetch_per_host": ("per_host", int),
                  "fetch_timeout": ("timeout", float), "fetch_max_bytes": ("max_bytes", int)}


@dataclass(frozen=True)
class TuningOptions:
    preset: str = DEFAULT_PRESET
    selection: Selection = PRESETS[DEFAULT_PRESET]
    templates: str = DEFAULT_TEMPLATES
    image_category: tuple[str, ...] | None = None  # the classes kept; None: no filter (the paper's default)
    validation_ratio: float = VALIDATION_RATIO
    max_images: int | None = None
    part: tuple[int, int] | None = None  # (i, n), 1-based
    image_cache: Path | None = None
    exclude_sha256: Path | None = None
    url_rewrite: tuple[str, str] | None = None
    from_parts: tuple[Path, ...] = ()
    fetch: tuple[tuple[str, Any], ...] = ()  # fetch_images keyword arguments

    def recorded(self) -> dict[str, Any]:
        """JSON values for the manifest and the card's command (no local paths, no part)."""
        s = self.selection
        out: dict[str, Any] = {"preset": self.preset, "types": ",".join(s.types), "queries": ",".join(s.queries),
                               "sampling": s.sampling, "max_tuples": s.max_tuples or 0,
                               "templates": self.templates, "validation_ratio": self.validation_ratio}
        if self.image_category is not None:
            out["image_category"] = ",".join(self.image_category)
        if self.max_images is not None:
            out["max_images"] = self.max_images
        if self.exclude_sha256 is not None:
            out["exclude_sha256"] = self.exclude_sha256.name
        return out


def parse_part(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``; :class:`UsageError` for anything else."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--part {text!r}: expected I/N, e.g. 1/3") from None
    if not 1 <= i <= n:
        raise UsageError(f"--part {text!r}: I must be between 1 and N")
    return i, n


def positive(kind: type) -> Any:
    """An argparse type: a positive (finite) ``kind`` (``int`` or ``float``), else a one-line usage error."""

    def parse(text: Any) -> Any:
        try:
            value = kind(text) if kind is float or str(text).strip().lstrip("+").isdigit() else None
        except (TypeError, ValueError):
            value = None
        if value is None or not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {'integer' if kind is int else 'number'}, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _fetch_options(options: dict[str, Any]) -> dict[str, Any]:
    """The ``fetch_outcomes`` keywords of the options (numbers checked: UsageError naming the option)."""
    fetch: dict[str, Any] = {}
    for key, (name, kind) in _FETCH_NUMBERS.items():
        if options.get(key) is not None:
            try:
                fetch[name] = positive(kind)(options[key])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"--{key.replace('_', '-')}: {exc}") from None
    if options.get("allow_private_addresses"):
        fetch["allow_private_addresses"] = True
    if options.get("allow_servers"):  # the bundled sample's local image server (test_context), never a flag
        fetch["allow_servers"] = tuple(options["allow_servers"])
    return fetch


def _names(value: Any, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in value.split(",") if x.strip()) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise UsageError(f"--{option} {value!r}: use a comma list of {', '.join(allowed)}")
    return tuple(n for n in allowed if n in names)  # canonical order


def parse_options(options: dict[str, Any]) -> TuningOptions:
    """Check the options dict of :func:`finer_datasets.core.build.build` (UsageError on bad values)."""
    preset = options.get("preset") or DEFAULT_PRESET
    if preset not in PRESETS:
        raise UsageError(f"--preset {preset!r}: use one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    changes: dict[str, Any] = {}
    if options.get("types") is not None:
        changes["types"] = _names(options["types"], TYPES, "types")
    if options.get("queries") is not None:
        changes["queries"] = _names(options["queries"], QUERIES, "queries")
    if options.get("sampling") is not None:
        if options["sampling"] not in SAMPLINGS:
            raise UsageError(f"--sampling {options['sampling']!r}: use one of {', '.join(SAMPLINGS)}")
        changes["sampling"] = options["sampling"]
    if options.get("max_tuples") is not None:
        if int(options["max_tuples"]) < 0:
            raise UsageError("--max-tuples must be 0 (no cap) or positive")
        changes["max_tuples"] = int(options["max_tuples"]) or None
    templates = options.get("templates") or DEFAULT_TEMPLATES
    if templates not in TEMPLATE_SETS:
        raise UsageError(f"--templates {templates!r}: use one of {', '.join(TEMPLATE_SETS)}")
    category = options.get("image_category")
    keep = _names(category, CATEGORIES, "image-category") if category is not None else None
    ratio = float(options.get("validation_ratio", VALIDATION_RATIO))
    if not 0.0 < ratio < 1.0:
        raise UsageError(f"--validation-ratio {ratio}: expected a share between 0 and 1 (both splits hold images)")
    max_images = options.get("max_images")
    if max_images is not None and int(max_images) < 1:
        raise UsageError("--max-images must be positive")
    part = options.get("part")
    if isinstance(part, str):
        part = parse_part(part)
    rewrite = options.get("url_rewrite")
    fetch = _fetch_options(options)
    cache = options.get("image_cache")
    return TuningOptions(
        preset=preset, selection=replace(base, **changes), templates=templates, image_category=keep,
        validation_ratio=ratio,
        max_images=int(max_images) if max_images is not None else None, part=tuple(part) if part else None,
        image_cache=Path(cache) if cache else None,
        exclude_sha256=Path(options["exclude_sha256"]) if options.get("exclude_sha256") else None,
        url_rewrite=tuple(rewrite) if rewrite else None,
        from_parts=tuple(Path(p) for p in options.get("from_parts") or ()), fetch=tuple(sorted(fetch.items())))


def read_exclusions(path: Path | None) -> tuple[frozenset[str], str | None]:
    """The sha256 hashes of an exclusion list (one per line, ``#`` comments) and the list's own sha256."""
    if path is None:
        return frozenset(), None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read the exclusion list: {exc.strerror or exc}", path=path) from exc
    hashes = set()
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        text = line.split("#", 1)[0].strip().lower()
        if not text:
            continue
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise SourceError(f"not a sha256 hex digest: {text[:80]!r}", path=path, record=f"line {number}")
        hashes.add(text)
    return frozenset(hashes), hashlib.sha256(data).hexdigest()


def add_arguments(group: Any) -> None:
    group.add_argument("--preset", choices=list(PRESETS), default=None,
                       help=f"selection of tuples (default {DEFAULT_PRESET}: the paper's training set; obj/attr/rel/wh: "
                            "Table 5, both queries of one type; negative-only: Table 4). Each targets 160K tuples: "
                            "paper and negative-only need 6 Pixmo-cap shards, a subset 9")
    group.add_argument("--types", help=f"override the preset's types (comma list of {', '.join(TYPES)})")
    group.add_argument("--queries", help="override the preset's query polarities (positive,negative)")
    group.add_argument("--sampling", choices=SAMPLINGS, help="pon: per image and type the positive or the negative "
                       "query (seeded); all: both")
    group.add_argument("--max-tuples", type=int, help="keep at most this many tuples, uniformly at random "
                       "(default 160000, the paper's size and the target a build warns it falls short of; 0: no cap)")
    group.add_argument("--templates", choices=TEMPLATE_SETS, default=None,
                       help=f"yes/no question templates of Obj/Attr/Rel (default {DEFAULT_TEMPLATES}: the paper's five, "
                            "appendix G; ours: fifteen of our own, five per type)")
    group.add_argument("--image-category", nargs="?", const=",".join(DEFAULT_KEEP), default=None, metavar="CLASSES",
                       help="classify each caption with the LLM (appendix E.2: " + ", ".join(CATEGORIES) +
                            ") and keep only the rows of these classes (comma list; alone: "
                            f"{','.join(DEFAULT_KEEP)}). Off by default, as in the paper")
    group.add_argument("--validation-ratio", type=float, default=None,
                       help=f"share of images in the validation split (default {VALIDATION_RATIO})")
    group.add_argument("--max-images", type=int, help="use only the first N usable rows of the source")
    group.add_argument("--part", type=parse_part, metavar="I/N",
                       help="build only part I of N (disjoint, by caption hash); finer merge joins the parts")
    group.add_argument("--image-cache", type=Path, help="image download cache (default OUT.images beside --out; "
                       "resumable, shared by rebuilds)")
    group.add_argument("--exclude-sha256", type=Path, metavar="FILE",
                       help="sha256 hashes of images to exclude (e.g. COCO and DOCCI-train), one per line")
    group.add_argument("--fetch-concurrency", type=positive(int), default=None,
                       help="image requests in flight (default 64)")
    group.add_argument("--fetch-per-host", type=positive(int), default=None, help="image requests per host (default 4)")
    group.add_argument("--fetch-timeout", type=positive(float), default=None, metavar="SECONDS",
                       help=f"seconds one image request may take in all: connect, first byte and whole body; a "
                            f"stalled or dripping server is cut then (default {FETCH_TIMEOUT:g})")
    group.add_argument("--allow-private-addresses", action="store_true",
                       help="also fetch image URLs (and redirects) whose host is this machine or a private network "
                            "(loopback, link-local, private, ...; refused by default as private_address): for a "
                            "local mirror of the images")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    options = {name: getattr(args, name, None) for name in
               ("preset", "types", "queries", "sampling", "max_tuples", "templates", "image_category", "max_images",
                "part", "exclude_sha256",
                "fetch_concurrency", "fetch_per_host", "fetch_timeout")}
    if getattr(args, "allow_private_addresses", False):
        options["allow_private_addresses"] = True
    if getattr(args, "validation_ratio", None) is not None:
        options["validation_ratio"] = args.validation_ratio
    cache = getattr(args, "image_cache", None)
    out = getattr(args, "out", None)
    if out and not cache:  # OUT.images beside --out (resolved first: `--out .` has no name of its own)
        cache = Path(out).resolve().with_name(Path(out).resolve().name + ".images")
    options["image_cache"] = cache
    return {k: v for k, v in options.items() if v is not None}
