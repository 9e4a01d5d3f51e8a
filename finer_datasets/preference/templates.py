"""Question and answer templates of the yes/no preference tuples (Obj, Attr, Rel).

Five templates per type, in the spirit of the paper's section G (our own wording): a question
about a phrase ``{X}``, an accepting answer that starts with "Yes" and names ``{Y}``, and a
correcting answer that starts with "No" and names ``{Z}``. Every slot receives a whole phrase
(an object list, "the car with ...", "the car parked next to ..."), so no template depends on
grammatical number. How the slots are filled (paper eq. 4, section G)::

    positive query  q+ = Q(Ψ+)   chosen = Yes(Ψ+)   rejected = No(Ψ−)
    negative query  q- = Q(Ψ−)   chosen = No(Ψ+)    rejected = Yes(Ψ−)

so the chosen answer always starts with the correct Yes/No and names what the image shows.
A template is numbered 1..5 in records (its index here + 1); the numbers are part of the
dataset's contract and never reordered.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Template", "TEMPLATES", "template"]


class Template(NamedTuple):
    question: str
    yes: str
    no: str


TEMPLATES: dict[str, tuple[Template, ...]] = {
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


def template(kind: str, number: int) -> Template:
    """Template ``number`` (1..5) of ``kind`` (``obj``, ``attr`` or ``rel``)."""
    return TEMPLATES[kind][number - 1]
