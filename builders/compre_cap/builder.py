"""FINER-CompreCap: CompreCap's human-annotated scene graphs (560 COCO images) -> FINER MCQ pairs.

Source layout (``--source DIR``)::

    DIR/anno.json          JSON list: {"image": "000000000802.jpg", "info": [{"category", "short_description",
                           "extend_description", "mask_out", "relation"}, ...]}
    DIR/images/<image>     the images (or directly in DIR/ when there is no images/ folder)

Attribute sentences are taken from ``short_description`` then ``extend_description`` (one
sentence each, duplicates dropped) and rewritten into ``with ...`` phrases; ``relation`` (a list
of sentences or one string, possibly empty) is parsed into (subject, predicate, object).
``mask_out`` is accepted and ignored. Before any model is asked, an image that is a link leading
outside the source folder (or under an ``images/`` folder that is one), or a FIFO, device or socket,
is an error naming its record (exit 2); only regular files inside the source are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finer_datasets.core.builder import BuildContext, BuildReport, DatasetBuilder, image_key
from finer_datasets.core.images import IMAGE_EXTENSIONS
from finer_datasets.core.source import read_json, refused
from finer_datasets.core.text import clean_text, split_sentences
from finer_datasets.errors import SourceError
from finer_datasets.hub.from_release import add_release_arguments, release_options, release_variant
from finer_datasets.mcq.builder import SceneGraphMCQBuilder, SourceImage
from finer_datasets.mcq.pairs import KLimits
from finer_datasets.scene_graph.graph import (
    SceneGraph,
    SGAttribute,
    SGObject,
    SGRelation,
)
from finer_datasets.scene_graph.lexicon import Lexicon, default_lexicon

from .paper import PAPER
from .parsing import parse_relation, rewrite_attribute
from .rewrite import LLMAttributeRewriter

__all__ = ["CompreCap"]

ANNOTATION_FILE = "anno.json"


class CompreCap(SceneGraphMCQBuilder):
    """Builder of FINER-CompreCap."""

    name = "compre_cap"
    pretty_name = "FINER-CompreCap"
    license = "cc-by-4.0"
    license_text = ("The questions and scene graphs are derived from the CompreCap annotations (CC BY 4.0). "
                    "The images are COCO images, which remain under the Flickr terms of use of their owners.")
    limits = KLimits(objects=6, attributes=3, relations=3)
    paper = PAPER  # Table 9 counts CompreCap per k: the default sampling (per-k)
    llm_stages = {**SceneGraphMCQBuilder.llm_stages, "rewrite": LLMAttributeRewriter}
    # entropy-filter thresholds of the paper for FINER-CompreCap (Table 7)
    entropy_thresholds = {"object": 0.8, "attribute": 0.8, "relation": 0.4}

    def __init__(self, lexicon: Lexicon | None = None, *, attribute_rewriter: Any = None):
        self.lexicon = lexicon or default_lexicon()
        # None: the rule-based rewriter (or the LLM's with --llm-stages rewrite); else prepare(items) + __call__
        self.attribute_rewriter = attribute_rewriter

    def scripted_handlers(self) -> list[Any]:
        from . import scripted

        return [scripted.answer]

    # -- building from the authors' released items (--from-release TABLES; finer_datasets.hub.from_release)

    def add_arguments(self, group: Any) -> None:
        super().add_arguments(group)
        add_release_arguments(group)

    def options_from(self, args: Any) -> dict[str, Any]:
        return {**super().options_from(args), **release_options(args)}

    def variant(self, options: dict[str, Any]) -> DatasetBuilder:
        return release_variant(self, options)

    @staticmethod
    def images_dir(source: Path) -> Path:
        return source / "images" if (source / "images").is_dir() else source

    def source_files(self, source: Path) -> list[tuple[str, list[Path]]]:
        images = self.images_dir(source)
        return [
            ("annotations", [source / ANNOTATION_FILE]),
            ("images", sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                              and refused(p, source) is None)),
        ]

    # -- structure -----------------------------------------------------------------------------

    def load_annotations(self, source: Path) -> list[dict[str, Any]]:
        """Read ``anno.json`` and check its structure; raise :class:`SourceError` naming the spot."""
        path = source / ANNOTATION_FILE
        data = read_json(path, root=source)
        if not isinstance(data, list):
            raise SourceError(f"expected a JSON list of images, got {type(data).__name__}", path=path)
        if not data:
            raise SourceError("the list of images is empty", path=path)
        seen: dict[str, int] = {}
        for index, record in enumerate(data):
            self._check_record(path, index, record)
            image = record["image"]
            if image in seen:
                raise SourceError(
                    f"duplicate image {image!r} (first at record {seen[image]})", path=path, record=index, field="image"
                )
            seen[image] = index
        return data

    @staticmethod
    def _check_record(path: Path, index: int, record: Any) -> None:
        def fail(message: str, field: str | None = None) -> None:
            raise SourceError(message, path=path, record=index, field=field)

        if not isinstance(record, dict):
            fail(f"expected an object, got {type(record).__name__}")
        image = record.get("image")
        if image is None:
            fail("missing", "image")
        if not isinstance(image, str) or not image.strip():
            fail(f"expected a non-empty string, got {image!r}", "image")
        if Path(image).is_absolute() or ".." in Path(image).parts:
            fail(f"must be a file name relative to the images folder, got {image!r}", "image")
        if Path(image).suffix.lower() not in IMAGE_EXTENSIONS:
            fail(f"unsupported image type {Path(image).suffix!r} (expected .jpg, .jpeg or .png)", "image")
        if "info" not in record:
            fail("missing", "info")
        if not isinstance(record["info"], list):
            fail(f"expected a list of objects, got {type(record['info']).__name__}", "info")
        for j, item in enumerate(record["info"]):
            where = f"info[{j}]"
            if not isinstance(item, dict):
                fail(f"expected an object, got {type(item).__name__}", where)
            if "category" not in item:
                fail("missing", f"{where}.category")
            if not isinstance(item["category"], str):
                fail(f"expected a string, got {type(item['category']).__name__}", f"{where}.category")
            for key in ("short_description", "extend_description", "mask_out"):
                if item.get(key) is not None and not isinstance(item[key], str):
                    fail(f"expected a string, got {type(item[key]).__name__}", f"{where}.{key}")
            relation = item.get("relation")
            if relation is not None and not isinstance(relation, str):
                if not isinstance(relation, list):
                    fail(f"expected a string or a list of strings, got {type(relation).__name__}", f"{where}.relation")
                for r, sentence in enumerate(relation):
                    if not isinstance(sentence, str):
                        fail(f"expected a string, got {type(sentence).__name__}", f"{where}.relation[{r}]")

    # -- content -------------------------------------------------------------------------------

    def read_graphs(self, source: Path, ctx: BuildContext) -> list[SourceImage]:
        source, report = Path(source), ctx.report
        rewriter = self.attribute_rewriter or (ctx.llm.stage("rewrite") if ctx.llm is not None else None)
        path = source / ANNOTATION_FILE
        images_dir = self.images_dir(source)
        out: list[SourceImage] = []
        keys: dict[str, str] = {}
        records = self.load_annotations(source)
        self._check_images(source, path, images_dir, records)
        if rewriter is not None:
            scratch = BuildReport()
            rewriter.prepare([
                (sentence, self._text(item["category"], scratch).lower())
                for record in records for item in record["info"]
                for sentence, _ in self._attribute_sentences(item, scratch)
            ])
        for index, record in enumerate(records):
            image_file = record["image"]
            image_id = Path(image_file).stem
            key = image_key(image_id)
            if key in keys:
                raise SourceError(f"image files {keys[key]!r} and {image_file!r} both become key {key!r} (rename one)",
                                  path=path, record=index, field="image")
            keys[key] = image_file
            graph = self._graph(path, index, image_id, image_file, record["info"], report, rewriter)
            out.append(SourceImage(image_id, key, images_dir / image_file, graph, annotation_file=path))
        out.sort(key=lambda s: s.key)  # the shard writer's order
        return out

    @staticmethod
    def _check_images(source: Path, path: Path, images_dir: Path, records: list[dict[str, Any]]) -> None:
        """Before any model is asked: no image may lead outside the source or be a FIFO, device or
        socket (a missing or unreadable image is reported when it is read)."""
        for index, record in enumerate(records):
            reason = refused(images_dir / record["image"], source)
            if reason is not None:
                raise SourceError(f"image {record['image']}: {reason}", path=path, record=index, field="image")

    def _text(self, value: str | None, report: BuildReport) -> str:
        if not value:
            return ""
        cleaned = clean_text(value)
        if cleaned != value.strip():
            report.fix("text_normalized")
        return cleaned

    def _graph(
        self, path: Path, index: int, image_id: str, image_file: str, info: list[dict], report: BuildReport,
        rewriter: Any = None,
    ) -> SceneGraph:
        record = f"{index} ({image_file})"
        objects: list[SGObject | None] = []
        for j, item in enumerate(info):
            name = self._text(item["category"], report).lower()
            if not name:
                report.skip("invalid_text", path=path, record=record, field=f"info[{j}].category", detail="empty category")
                objects.append(None)
                continue
            objects.append(SGObject(f"o{j}", name, self._attributes(path, record, j, name, item, report, rewriter)))

        names = [o.name if o else "\0" for o in objects]
        relations: list[SGRelation] = []
        seen: set[tuple[str, str, str]] = set()
        for j, item in enumerate(info):
            subject = objects[j]
            if subject is None:
                continue
            sentences = item.get("relation") or []
            if isinstance(sentences, str):
                sentences = [sentences]
            for r, raw in enumerate(sentences):
                sentence = self._text(raw, report)
                field = f"info[{j}].relation[{r}]"
                if not sentence:
                    continue
                parsed = parse_relation(sentence, j, names)
                if parsed.reason:
                    report.skip(parsed.reason, path=path, record=record, field=field, detail=f"{sentence!r}: {parsed.detail}")
                    continue
                target = objects[parsed.object_index]
                signature = (subject.name, parsed.predicate, target.name if target else "")
                if signature in seen:
                    report.skip("duplicate_relation", path=path, record=record, field=field, detail=repr(sentence))
                    continue
                seen.add(signature)
                relations.append(
                    SGRelation(f"r{len(relations)}", subject.id, parsed.predicate, f"o{parsed.object_index}", sentence)
                )
        kept = tuple(o for o in objects if o is not None)
        return SceneGraph(image_id=image_id, image_file=image_file, objects=kept, relations=tuple(relations))

    def _attribute_sentences(self, item: dict, report: BuildReport) -> list[tuple[str, str]]:
        """(sentence, source field) of an object: short then extended description, de-duplicated."""
        sentences: list[tuple[str, str]] = []
        for key in ("short_description", "extend_description"):
            for sentence in split_sentences(self._text(item.get(key), report)):
                if sentence.lower() not in {s.lower() for s, _ in sentences}:
                    sentences.append((sentence, key))
        return sentences

    def _attributes(
        self, path: Path, record: str, j: int, name: str, item: dict, report: BuildReport, rewriter: Any = None
    ) -> tuple[SGAttribute, ...]:
        sentences = self._attribute_sentences(item, report)
        if not sentences:
            report.skip(
                "object_without_attributes", path=path, record=record, field=f"info[{j}]", detail=f"{name!r} has no attribute sentence"
            )
            return ()
        attributes: list[SGAttribute] = []
        texts: set[str] = set()
        for sentence, key in sentences:
            if rewriter is not None:
                phrases = rewriter(sentence, name)
            else:
                phrases = rewrite_attribute(sentence, name, self.lexicon)
            if phrases is None:
                report.skip("attribute_unparsed", path=path, record=record, field=f"info[{j}].{key}", detail=repr(sentence))
                continue
            for phrase in phrases:
                if phrase.lower() not in texts:
                    texts.add(phrase.lower())
                    attributes.append(SGAttribute(f"o{j}_a{len(attributes)}", phrase, sentence))
        return tuple(attributes)
