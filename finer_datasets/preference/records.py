"""Per-image FINER-Tuning records -> training rows (one row per selected tuple).

A record (schema ``schemas/tuning_image.schema.json``) stores the tuples of its image that the
release selected (builder 1.x stored every candidate with ``selected`` marking the release's; those
records still read right). The row functions yield the selected tuples in record order, without the image: :func:`finer_datasets.hub.load.load_finer` attaches it
(``images`` = ``[PIL image]`` for ``trl``), exporters add a path.

* :func:`trl_rows` -- TRL's conversational vision preference format (the layout of
  ``HuggingFaceH4/rlaif-v_formatted``) that ``trl.DPOTrainer`` takes unchanged, plus ``id``,
  ``subset`` (the type), ``query_type`` (``positive``/``negative``) and ``granularity``
  (:func:`granularity`: k, the number of elements the tuple names; what margin DPO weighs by);
* :func:`sft_rows` -- the chosen answer only, as TRL's conversational vision SFT format
  (``messages``), for the SFT ablation (paper, Table 4).
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["selected_tuples", "granularity", "trl_rows", "sft_rows", "prompt_messages", "answer_messages"]


def selected_tuples(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The tuples of a record that the release selected, in record order (every tuple of a 2.x
    record; the ``selected`` ones of a 1.x record, which stored every candidate)."""
    return (t for t in record.get("tuples", ()) if t.get("selected", True))


def prompt_messages(question: str) -> list[dict[str, Any]]:
    """One user turn: the image placeholder, then the question."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def answer_messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def granularity(record: dict[str, Any], tuple_: dict[str, Any]) -> int:
    """k, the number of elements a tuple names: the instances (``items``) of the record's phrase of
    the tuple's type (objects for Obj, attributes for Attr, relations for Rel; the negative
    replaces one of them); 1 for a Wh tuple (its negative changes one detail) and for a record
    without a phrase of that type."""
    if tuple_["type"] != "wh":
        for phrase in record.get("phrases", ()):
            if phrase["type"] == tuple_["type"]:
                return len(phrase["items"])
    return 1


def trl_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One DPO row per selected tuple: ``id``, ``subset``, ``query_type``, ``prompt``, ``chosen``,
    ``rejected``, ``granularity`` (the caller adds ``images``)."""
    return [{"id": t["id"], "subset": t["type"], "query_type": t["query"], "prompt": prompt_messages(t["question"]),
             "chosen": answer_messages(t["chosen"]), "rejected": answer_messages(t["rejected"]),
             "granularity": granularity(record, t)}
            for t in selected_tuples(record)]


def sft_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One SFT row per selected tuple: ``id``, ``subset``, ``query_type`` and ``messages`` (the
    question, then the chosen answer); the rejected answer is not used (paper, Table 4)."""
    return [{"id": t["id"], "subset": t["type"], "query_type": t["query"],
             "messages": prompt_messages(t["question"]) + answer_messages(t["chosen"])}
            for t in selected_tuples(record)]
