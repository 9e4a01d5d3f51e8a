"""Reading the chosen option letter out of a model's raw answer to a FINER MCQ.

FINER prompts end by asking for "a single capital letter (A, B, C, D, or E)"
(:mod:`finer_datasets.eval.prompts`), but models still answer "(B)", "Answer: B", "**B**",
"B: No, but I can see ..." or repeat the text of an option. :func:`parse_answer` reads all of
these in its default ``strict`` mode and returns ``None`` -- scored as wrong -- unless the answer
states exactly one option unambiguously: it never guesses. ``mode="official"`` reproduces the
parser released with FINER so that scores can be compared with the published numbers (see
:func:`parse_answer` for its flaw).

How ``strict`` reads an answer (after dropping Markdown marks and surrounding quotes):

1. a bare letter ("B", "(b)", "B.") is that letter; the full text of exactly one option is it;
2. otherwise every option text quoted verbatim is blanked (its letters are not mentions) and
   every standalone capital A-E is a *mention* -- not "A" as an article ("A cat ..."), not an
   initialism ("E.g.", "U.S.A."), not inside a word ("B's"); a lowercase letter is one only
   right after a lead-in ("the answer is e.");
3. a mention is *negated* when its clause says so ("not A", "isn't B", "anything but C",
   "except D", "rule out E", "B is wrong", "the wrong one is A"); it is *in answer position* at
   the start of the answer, after a lead-in ("Answer:", "option", "I think", "so"), alone in
   its clause ("Looking closely, C.") or before "is correct"/"is the answer";
4. the answer is letter X only if no mention is negated, X is the only letter mentioned and at
   least one mention is in answer position, no other option's text is quoted, the text after
   an answer-position X does not start like another option ("B. Yes, ..." when A is "Yes, ...")
   and nothing after it retracts it ("actually", "wait", "or maybe not").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from finer_datasets.constants import LETTERS

__all__ = ["LETTERS", "PARSER_MODES", "parse_answer", "normalize_option_text"]

PARSER_MODES = ("strict", "official")

# Markdown emphasis and code marks: "**B**", "`B`", "__B__".
_MARKUP = re.compile(r"[*`]+|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

# The whole answer is a letter: "B", "b", "(B)", "[b]", "B.", "B)", "B:", "(B).".
_BARE = re.compile(r"^[(\[{<]?\s*([A-Ea-e])\s*[)\]}>]?\s*[.:)\],;!]?$")
# A standalone capital A-E: not inside a word ("B's", "A1"), not an initialism ("E.g.", "U.S.A.").
_UPPER = re.compile(r"(?<![A-Za-z0-9'’])(?<![A-Za-z]\.)([A-E])(?![A-Za-z0-9]|['’][A-Za-z]|\.[A-Za-z])")
# A standalone lowercase a-e closing its clause ("... is e."); a mention only after a lead-in.
_LOWER = re.compile(r"(?<![A-Za-z0-9'’])(?<![A-Za-z]\.)([a-e])(?=\s*[)\]]?\s*(?:$|[.,;:!]))")
# "A" followed by a lowercase word is the article ("A cat is ..."), unless the word links letters;
# followed by a capitalized word ("A Cat", "A Yes, ...") it is a letter only if option A starts so.
_NEXT_WORD = re.compile(r"\s+([a-z][a-z'’-]*)")
_NEXT_TITLE = re.compile(r"\s+([A-Z][a-z][A-Za-z'’-]*)")
_LINKING_WORDS = frozenset({"or", "and", "nor", "vs", "versus", "then", "but", "not", "is", "are", "was", "seems",
                            "would", "could", "might", "should", "must", "will", "because", "since", "as", "to",
                            "from", "through", "cannot", "definitely", "clearly", "fits", "matches"})

# Lead-ins naming the letter that follows: "Answer: B", "the correct option is (C)", "I'd pick D",
# "I think E", "so A". Matched against the text just before a mention; lowercase letters need one
# of the first group.
_FILLER = (r"(?:\s+(?:the|my|final|correct|right|best|most|likely|probably|definitely|clearly|surely|certainly|"
           r"option|choice|answer|letter|is|be|would|will|must|should|it['’]s))*")
_LEAD = r"\s*[:=\-–—]?\s*[(\[\"'“‘]?\s*$"
_LEAD_ANY = re.compile(r"\b(?:answer|option|choice|pick|choose|select|go\s+with|opt\s+for|is|be|"
                       r"think|believe|guess|say|therefore|thus|hence|so|it['’]s)" + _FILLER + _LEAD, re.I)
_LEAD_LOWER = re.compile(r"\b(?:answer|option|choice|pick|choose|select|go\s+with|opt\s+for|is|be)" + _FILLER + _LEAD,
                         re.I)
# A mention alone in its clause ("Looking closely, C."), or before a verdict ("C is correct"); a
# question ("Is it B?") is never an answer.
_CLAUSE_OPEN = re.compile(r"(?:^|[,.;:!\n])\s*[(\[\"'“‘]?\s*$")
_CLAUSE_CLOSE = re.compile(r"\s*[)\]\"'”’]?\s*(?:$|[,.;:!\n])")
_VERDICT = re.compile(r"\s*[)\]]?\s+(?:is|seems|looks|appears|would\s+be|should\s+be|must\s+be)\s+(?:the\s+)?"
                      r"(?:(?:most|more|only|best|correct|right)\s+)*(?:correct|right|true|accurate|best|answer|"
                      r"option|choice|likely|appropriate|suitable|plausible)\b", re.I)
# What may open an answer: "B", "(B)", "B." at the very start.
_START = re.compile(r"^[(\[{<\"'“‘]?\s*$")
_START_NEXT = re.compile(r"[)\]}>]?(?:$|[\s.:,;!]|[\-–—](?![A-Za-z]))")  # "D-shaped" is a word
_LOWER_START = re.compile(r"^[(\[]\s*([a-e])\s*[)\]]")  # "(b) text"
_QUESTION = re.compile(r"\s*[)\]]*\s*\?")

# Negation of a mention within its clause ("not A", "isn't B", "anything but C", "wrong: c").
_CLAUSE_TAIL = re.compile(r"[^,.;:!?\n]*$")
_NEG_LOWER = re.compile(r"(?:\bnot|n['’]t|\bnever|\bexcept|\bbut|\bwrong|\bincorrect)\s*[:(\[]?\s*$", re.I)
_NEG_BEFORE = re.compile(r"\b(?:not|never|cannot|neither|nor|except|excluding|exclude[sd]?|eliminat\w*|besides|"
                         r"(?:other|rather)\s+than|instead\s+of|apart\s+from|rul(?:e|es|ed|ing)\s+out|"
                         r"(?:anything|everything|all|any)\s+but)\b|n['’]t\b|\bno\s*[(\[]?\s*$|"
                         r"\b(?:wrong|incorrect|false)(?:\s+(?:one|answer|option|choice))?(?:\s+(?:is|would\s+be))?"
                         r"\s*[:\-]?\s*[(\[]?\s*$", re.I)
# Negation right after a mention: "B is wrong", "B: incorrect", "B, which is not right", "E can be ruled out".
_NEG_AFTER = re.compile(r"\s*[)\]\"'”’]?\s*(?:[:,\-–—(]\s*)?(?:(?:which|that|it)\s+)?"
                        r"(?:(?:is|are|was|were|seems|looks|appears|sounds|would|will|must|should|could|can|may|"
                        r"might|does|do)\s+)?(?:(?:be|definitely|clearly|certainly|probably|surely|obviously|also|"
                        r"just|simply|actually|most|very)\s+)*(?:not|never|cannot|[a-z]+n['’]t|wrong|incorrect|false|"
                        r"invalid|inaccurate|untrue|eliminated|excluded|ruled\s+out|out|impossible|unlikely|"
                        r"rejected)\b", re.I)
# Words that take back an answer given before them: "A. Actually B", "B... wait", "C, or maybe not".
_RETRACT = re.compile(r"\b(?:actually|wait|correction|on\s+second\s+thought|i\s+mean|scratch\s+that|"
                      r"or\s+rather|sorry|oops|reconsider\w*|take\s+(?:it|that)\s+back|"
                      r"(?:or|maybe|perhaps|probably)\s+not)\b", re.I)
# The separator after an answer letter, before the text that may follow it.
_SEPARATOR = re.compile(r"\s*[)\]}>]?\s*[.:,;\-–—]?\s*")
_POLAR = frozenset({"yes", "no"})
_WINDOW = 80  # characters of context read before a mention


def normalize_option_text(text: str) -> str:
    """Option text as compared by :func:`parse_answer`: case-folded, whitespace collapsed,
    surrounding quotes/markup and final periods removed."""
    text = _MARKUP.sub("", text)
    text = _SPACE.sub(" ", text).strip().strip("\"'“”‘’").strip()
    return text.rstrip(".").strip().casefold()


def _option_matches(text: str, options: Sequence[str]) -> set[str]:
    norm = normalize_option_text(text)
    if not norm:
        return set()
    return {LETTERS[i] for i, option in enumerate(options[: len(LETTERS)]) if normalize_option_text(option) == norm}


@dataclass(frozen=True)
class _Mention:
    letter: str
    start: int
    end: int
    answer: bool  # in answer position
    negated: bool


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _floor(start: int, floor: int = 0) -> int:
    """Where the context read before a mention at ``start`` begins: at most ``_WINDOW``
    characters back, never before ``floor``. Patterns search ``text`` between this and
    ``start`` (``pos``/``endpos``), so word boundaries still see the real text around it."""
    return max(floor, start - _WINDOW)


def _negated(text: str, start: int, end: int, floor: int) -> bool:
    """Whether the clause around the mention ``text[start:end]`` negates it."""
    clause = _CLAUSE_TAIL.search(text, _floor(start, floor), start).start()
    return bool(_NEG_BEFORE.search(text, clause, start) or _NEG_AFTER.match(text, end))


def _answer_position(text: str, start: int, end: int) -> bool:
    lo = _floor(start)
    if _QUESTION.match(text, end):
        return False  # a question is not an answer
    if _START.match(text, 0, start) and _START_NEXT.match(text, end):
        return True
    if _LEAD_ANY.search(text, lo, start) or _VERDICT.match(text, end):
        return True
    return bool(_CLAUSE_OPEN.search(text, lo, start) and _CLAUSE_CLOSE.match(text, end))


def _article(scan: str, end: int, options: Sequence[str]) -> bool:
    """Whether the capital ``A`` ending at ``end`` reads as the English article."""
    word = _NEXT_WORD.match(scan, end)
    if word:
        return word.group(1) not in _LINKING_WORDS and not word.group(1).endswith(("n't", "n’t"))
    title = _NEXT_TITLE.match(scan, end)
    return bool(title) and not (options and _words(options[0])[:1] == _words(title.group(1)))


def _mentions(scan: str, options: Sequence[str]) -> list[_Mention]:
    """Every letter mention in ``scan`` (option texts already blanked), in order."""
    found: list[tuple[int, int, str, bool | None]] = []
    for m in _UPPER.finditer(scan):
        if m.group(1) != "A" or not _article(scan, m.end(), options):
            found.append((m.start(), m.end(), m.group(1), None))
    start = _LOWER_START.match(scan)
    if start:
        found.append((start.start(1), start.end(1), start.group(1).upper(), None))
    for m in _LOWER.finditer(scan):
        if _LEAD_LOWER.search(scan, _floor(m.start()), m.start()):
            found.append((m.start(), m.end(), m.group(1).upper(), None))
        elif _NEG_LOWER.search(scan, _floor(m.start()), m.start()):
            found.append((m.start(), m.end(), m.group(1).upper(), True))
    out: list[_Mention] = []
    floor = 0
    for start, end, letter, negated in sorted({f[0]: f for f in found}.values()):
        negated = negated or _negated(scan, start, end, floor)
        out.append(_Mention(letter, start, end, _answer_position(scan, start, end), negated))
        floor = end
    return out


def _blank_options(text: str, options: Sequence[str]) -> tuple[str, set[str]]:
    """``text`` with every verbatim occurrence of an option replaced by as many ``z`` (so that
    offsets stay and "A <option>" still reads as an article) -- ``Z`` for option A's own text, so
    that "A <text of A>" reads as the letter -- and the letters of those options."""
    quoted: set[str] = set()
    ranked = sorted(range(len(options)), key=lambda i: len(options[i]), reverse=True)
    for i in ranked:
        core = _SPACE.sub(" ", _MARKUP.sub("", options[i])).strip().rstrip(".").strip()
        if len(core) < 2:
            continue
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(core)}(?![A-Za-z0-9])", re.I)
        text, count = pattern.subn(lambda m, z="Z" if i == 0 else "z": z * len(m.group()), text)
        if count:
            quoted.add(LETTERS[i])
    return text, quoted


@lru_cache(maxsize=1024)
def _option_words(option: str) -> tuple[str, ...]:
    return tuple(_words(option))


def _disagrees(text: str, at: int, letter: str, options: Sequence[str]) -> bool:
    """Whether the text after an answer letter (``text[at:]``) starts like another option rather
    than like the letter's own ("B. Yes, I can see ..." when only A starts with "Yes").

    Only the first words can match an option, so only a window of ``text`` is read (an answer
    that repeats a letter many times stays linear): cut where a word may be cut, the last word
    is dropped and a word no option has stands for the rest."""
    span = 2 * max(len(option) for option in options) + 64
    words = _words(text[at:at + span])
    if len(text) - at > span:
        words = words[:-1] + ["\0"]
    if not words:
        return False

    def shared(option: str) -> int:
        n = 0
        for a, b in zip(words, _option_words(option)):
            if a != b:
                break
            n += 1
        return n

    own = shared(options[LETTERS.index(letter)])
    for i, option in enumerate(options):
        n = shared(option)
        if LETTERS[i] != letter and n > own and (n >= 2 or n == len(_option_words(option)) or n == len(words)
                                                  or words[0] in _POLAR):
            return True
    return False


def _parse_official(text: str) -> str | None:
    for char in text:
        if char in "ABCDEabcde":
            return char.upper()
    return None


def _parse_strict(text: str, options: Sequence[str] | None) -> str | None:
    text = _SPACE.sub(" ", _MARKUP.sub("", text)).strip().strip("\"'“”‘’").strip()
    if not text:
        return None
    bare = _BARE.match(text)
    if bare:
        return bare.group(1).upper()
    options = list(options[: len(LETTERS)]) if options else []
    whole = _option_matches(text, options)
    if whole:  # the answer is the text of an option
        return whole.pop() if len(whole) == 1 else None
    scan, quoted = _blank_options(text, options)
    mentions = _mentions(scan, options)
    letters = {m.letter for m in mentions}
    if len(letters) != 1 or any(m.negated for m in mentions):
        return None
    letter = letters.pop()
    answers = [m for m in mentions if m.answer]
    if not answers or quoted - {letter} or _RETRACT.search(scan, answers[0].end):
        return None
    if options and letter in LETTERS[: len(options)]:
        for m in answers:
            if _disagrees(text, _SEPARATOR.match(text, m.end).end(), letter, options):
                return None
    return letter


def parse_answer(text: str, options: Sequence[str] | None = None, mode: str = "strict") -> str | None:
    """The option letter (``"A"`` to ``"E"``) a model's raw answer chooses, or ``None``.

    ``mode="strict"`` (the default) returns a letter only when the answer states exactly one
    option unambiguously (the module docstring gives the rule). It accepts the forms models
    actually produce::

        "B"  "b"  "(B)"  "B."  "B) text"  "Answer: B"  "The answer is B."  "**B**"
        "B: No, but I can see ..."  "Option C is correct"  "I think D"  "Looking closely, C."

    and, when ``options`` (the five option texts in A-E order) are given, the full text of
    exactly one option (case-, whitespace- and final-period-insensitive), alone or after its
    letter. It returns ``None`` -- never a guess -- when the answer is empty; names two different
    letters ("A or B", "A. Actually B", "B, not C"); negates a letter ("Not A", "It is not B.",
    "Option B is incorrect.", "anything but C"); gives a letter with the text of another option
    ("Answer: C. <text of D>"); takes its answer back ("B... wait"); asks ("Is it B?"); or only
    mentions a letter in passing ("the sign shows the letter B"). A capital "A" followed by an
    ordinary word is the article ("A cat is on the desk" -> ``None``) and "I" is never an option
    letter.

    ``mode="official"`` reproduces the parser released with FINER, kept **only** so that scores
    can be compared with the published numbers: it returns the first character in ``[A-Ea-e]``
    anywhere in the answer, upper-cased, or ``None`` if there is none. It is compatible but
    flawed: "The answer is B" gives ``"E"`` (the "e" of "The") and "Yes" gives ``"E"``. With the
    official 2-token, single-letter protocol most answers are a bare letter and both modes agree.
    """
    if mode not in PARSER_MODES:
        raise ValueError(f"unknown parser mode {mode!r}; expected one of {', '.join(PARSER_MODES)}")
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"answer must be a string, got {type(text).__name__}")
    if mode == "official":
        return _parse_official(text)
    return _parse_strict(text, options)
