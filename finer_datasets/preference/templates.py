"""Question and answer templates of the yes/no preference tuples (Obj, Attr, Rel).

Two sets, chosen per build (``finer build tuning --templates paper|ours``):

* ``paper`` (the default): the five templates of the paper's appendix G, shared by Obj, Attr and
  Rel, word for word;
* ``ours``: fifteen templates of our own (five per type, finer-datasets 1.x), for a build whose
  questions should not repeat the paper's (and the FINER benchmarks') wording.

A template is a question about a phrase ``{X}``, an accepting answer that starts with "Yes" and
names ``{Y}``, and a correcting answer that starts with "No, but" and names ``{Z}``. Every slot
receives a whole phrase (an object list, "the car with ...", "the car parked next to ..."), so no
template depends on grammatical number. One template is drawn per tuple (seeded, see
:func:`~.construct.template_tuples`). How the slots are filled::

    positive query  q+ = Q(Ψ+)   chosen a+ = Yes(Ψ+)   rejected a- = No(Ψ−)
    negative query  q- = Q(Ψ−)   chosen a+ = No(Ψ+)    rejected a- = Yes(Ψ−)

so the chosen answer always starts with the correct Yes/No and names what the image shows. This is
the paper's section 3 ("a+ begins with the correct response ... and mentions the correct image
features, while a− is the opposite") and the benchmarks' MCQs (appendix B.4: for q−, "No, but I can
see P+" is correct and "Yes" names the corrupted phrase). Appendix G's text for the negative
configuration reads {Y} = Ψ+, {Z} = Ψ−, which would make the chosen answer "No, but ... Ψ−" (naming
what is *not* in the image); we follow section 3 and B.4, as the authors' released generation code
does ("No, but" + the positive phrase as the accepted answer of a negative question).

A template is numbered 1..5 in records (its index in its set + 1; the paper's numbering for
``paper``); the numbers are part of the dataset's contract and never reordered. The manifest
(``provenance.selection.templates``) says which set a build used.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Template", "TEMPLATES", "TEMPLATE_SETS", "DEFAULT_TEMPLATES", "PAPER_TEMPLATES", "template",
           "templates_for"]


class Template(NamedTuple):
    question: str
    yes: str
    no: str


#: appendix G, templates (1) to (5), shared by Obj, Attr and Rel
PAPER_TEMPLATES: tuple[Template, ...] = (
    Template("Does this image contain {X}?", "Yes, this image contains {Y}.", "No, but this image contains {Z}."),
    Template("Does this image show {X}?", "Yes, this image shows {Y}.", "No, but this image shows {Z}."),
    Template("Does this image include {X}?", "Yes, this image includes {Y}.", "No, but this image includes {Z}."),
    Template("Can you see {X} in this image?", "Yes, I can see {Y} in this image.",
             "No, but I can see {Z} in this image."),
    Template("Can {X} be seen in this image?", "Yes, {Y} can be seen in this image.",
             "No, but {Z} can be seen in this image."),
)

_OURS: dict[str, tuple[Template, ...]] = {
    # Ψ_Obj: "a red car, a wooden bench, and a tree"
    "obj": (
        Template("Is there {X} in this picture?", "Yes, there is {Y} in this picture.",
                 "No, but there is {Z} in this picture."),
        Template("Does this photo depict {X}?", "Yes, this photo depicts {Y}.", "No, but this photo depicts {Z}."),
        Template("Would I find {X} if I looked at this image?", "Yes, you would find {Y} in this image.",
                 "No, but you would find {Z} in this image."),
        Template("Looking at this image, can {X} be spotted?", "Yes, {Y} can be spotted in this image.",
                 "No, but {Z} can be spotted in this image."),
        Template("Does the scene in this image feature {X}?", "Yes, the scene features {Y}.",
                 "No, but the scene features {Z}."),
    ),
    # Ψ_Attr: "the car with a red color and a chrome bumper"
    "attr": (
        Template("Is {X} present in this image?", "Yes, {Y} is present in this image.",
                 "No, but {Z} is present in this image."),
        Template("Can you find {X} in this photo?", "Yes, I can find {Y} in this photo.",
                 "No, but I can find {Z} in this photo."),
        Template("Is this a picture featuring {X}?", "Yes, this picture features {Y}.",
                 "No, but this picture features {Z}."),
        Template("Does {X} appear in this image?", "Yes, {Y} appears in this image.",
                 "No, but {Z} appears in this image."),
        Template("In this image, do you notice {X}?", "Yes, I notice {Y} in this image.",
                 "No, but I notice {Z} in this image."),
    ),
    # Ψ_Rel: "the car parked next to the bench and in front of the house"
    "rel": (
        Template("Is {X} depicted in this image?", "Yes, {Y} is depicted in this image.",
                 "No, but {Z} is depicted in this image."),
        Template("Can {X} be observed in this image?", "Yes, {Y} can be observed in this image.",
                 "No, but {Z} can be observed in this image."),
        Template("Does this scene contain {X}?", "Yes, this scene contains {Y}.", "No, but this scene contains {Z}."),
        Template("Do you see {X} here?", "Yes, I see {Y} here.", "No, but I see {Z} here."),
        Template("Is it true that the image captures {X}?", "Yes, the image captures {Y}.",
                 "No, but the image captures {Z}."),
    ),
}

#: template set -> type -> its five templates
TEMPLATES: dict[str, dict[str, tuple[Template, ...]]] = {
    "paper": {kind: PAPER_TEMPLATES for kind in ("obj", "attr", "rel")},
    "ours": _OURS,
}
TEMPLATE_SETS = tuple(TEMPLATES)
DEFAULT_TEMPLATES = "paper"


def templates_for(kind: str, templates: str = DEFAULT_TEMPLATES) -> tuple[Template, ...]:
    """The five templates of ``kind`` (``obj``, ``attr`` or ``rel``) in the set ``templates``."""
    if templates not in TEMPLATES:
        raise ValueError(f"template set {templates!r}: use one of {', '.join(TEMPLATE_SETS)}")
    return TEMPLATES[templates][kind]


def template(kind: str, number: int, templates: str = DEFAULT_TEMPLATES) -> Template:
    """Template ``number`` (1..5) of ``kind`` in the set ``templates``."""
    return templates_for(kind, templates)[number - 1]
