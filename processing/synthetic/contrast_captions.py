"""Contrast captions of the synthetic benchmark: a caption of a video rewritten so that it is false of that video
and only the video's motion or the order of its events can tell (NegCLIP's swapped-word negatives, Yuksekgonul et
al. 2023; Verbs in Action's verb-changed ones, Momeni et al. 2023).

- `motion`: one described action replaced by its opposite (`scenes.OPPOSITE`: left/right, up/down, grow/shrink,
  appear/disappear), with the synonym at the same place in `captions.ACTION_PHRASES` ("slides to the left" ->
  "slides to the right"). Actions without an opposite (spin) get none.
- `order`: a full caption of a two-event video with its events swapped: the two verb phrases of one object
  ("rises and then shrinks" -> "shrinks and then rises"), or the two clauses of two objects ("a red star rises,
  then a blue box sinks" -> "a blue box sinks, then a red star rises").

A rewrite is kept only if what it claims is false of the video (`scenes.scene_facts`; "a circle moves right" is no
contrast for a circle that moves left and then right) and possible in another video (`scenes.is_valid`; "it
grows, then appears" is refuted by the words alone). Captions are edited, not regenerated, so a contrast differs
from its caption in the one place that matters and in nothing else.
"""

import re

from .captions import ACTION_PHRASES, COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
from .scenes import OPPOSITE, event_claims, is_valid, scene_claims, scene_facts

CONTRAST_FACTORS = ("motion", "order")


def _phrase_pattern(phrases) -> str:
    # Longest first, so "grows larger" wins over "grows".
    return "|".join(re.escape(phrase) for phrase in sorted(phrases, key=len, reverse=True))


def _noun_phrase_span(text: str, obj: dict) -> tuple[int, int] | None:
    """Where the noun phrase of `obj` (any determiner and synonyms) is in `text`, if it is there exactly once."""
    pattern = (rf"\b(?:a|an|the) (?:{_phrase_pattern(SIZE_WORDS[obj['size']])}) "
               rf"(?:{_phrase_pattern(COLOUR_WORDS[obj['colour']])}) (?:{_phrase_pattern(SHAPE_WORDS[obj['shape']])})\b")
    found = list(re.finditer(pattern, text))
    return found[0].span() if len(found) == 1 else None


def _verb_span(text: str, action: str, start: int = 0, anchored: bool = False) -> tuple[int, int, int] | None:
    """`(start, end, synonym index)` of the one phrase of `action` in `text[start:]` (right at `start` if
    `anchored`); `None` if there is none or more than one."""
    phrases = ACTION_PHRASES[action]
    pattern = rf"\b(?:{_phrase_pattern(phrases)})\b"
    if anchored:
        found = re.match(pattern, text[start:])
        found = [found] if found else []
    else:
        found = list(re.finditer(pattern, text[start:]))
    if len(found) != 1:
        return None
    begin, end = found[0].span()
    return start + begin, start + end, phrases.index(found[0].group(0))


def _event_spans(text: str, scene: dict, events: list[int]) -> dict[int, tuple[int, int, int]] | None:
    """The verb phrase span of each described event. In a two-object ("pair") caption each verb phrase follows its
    subject (every pair template says "{S} {V}"), which tells apart two objects doing the same action; elsewhere
    one object's actions differ (`scenes.is_valid`), so each action's phrase occurs once."""
    spans = {}
    for index in events:
        event = scene["events"][index]
        if scene["kind"] == "pair" and len(events) == 2:
            subject = _noun_phrase_span(text, scene["objects"][event["object"]])
            span = None if subject is None else _verb_span(text, event["action"], subject[1] + 1, anchored=True)
        else:
            span = _verb_span(text, event["action"])
        if span is None:
            return None
        spans[index] = span
    return spans


def _rewrite(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text[0].upper() + text[1:]


def _is_false_of(scene: dict, changed: dict, events: list[int], partial: bool) -> bool:
    """Whether the caption of `changed` is false of `scene` and still describes a video the benchmark could hold (a
    contrast the words alone refute, such as "grows, then appears", would teach a text-only shortcut)."""
    if not is_valid(changed):
        return False
    claims = event_claims(changed, events) if partial else scene_claims(changed)
    return not claims <= scene_facts(scene)


def contrast_captions(scene: dict, caption: dict, factors=CONTRAST_FACTORS) -> list[str]:
    """
    The contrasts of one caption of `scene` in `factors` (see the module docstring).

    Args:
        scene: a benchmark scene (`metadata.json`'s `scene`: `kind`, `objects`, `events`).
        caption: `{"text", "partial", "events"}` as in `metadata.json` (`events`: indices of the described events).
        factors: any of `CONTRAST_FACTORS`.
    Returns:
        The contrast captions, in factor order (motion: one per described event with an opposite action); empty
        when none applies or the caption's wording could not be matched to its events.
    """
    unknown = sorted(set(factors) - set(CONTRAST_FACTORS))
    if unknown:
        raise ValueError(f"contrast_captions: {unknown} are not contrast factors; choose from {CONTRAST_FACTORS}.")
    text = caption["text"][0].lower() + caption["text"][1:]
    events = list(caption["events"])
    spans = _event_spans(text, scene, events)
    if spans is None:
        return []
    contrasts = []
    if "motion" in factors:
        for index in events:
            action = scene["events"][index]["action"]
            if action not in OPPOSITE:
                continue
            changed = {**scene, "events": [dict(event) for event in scene["events"]]}
            changed["events"][index]["action"] = OPPOSITE[action]
            if _is_false_of(scene, changed, events, caption["partial"]):
                start, end, synonym = spans[index]
                contrasts.append(_rewrite(text, [(start, end, ACTION_PHRASES[OPPOSITE[action]][synonym])]))
    if "order" in factors and len(scene["events"]) == 2 and not caption["partial"]:
        changed = {**scene, "events": scene["events"][::-1]}
        if _is_false_of(scene, changed, events, partial=False):
            (start0, end0, _), (start1, end1, _) = spans[0], spans[1]
            edits = [(start0, end0, text[start1:end1]), (start1, end1, text[start0:end0])]
            if scene["kind"] == "pair":
                subjects = [_noun_phrase_span(text, scene["objects"][event["object"]]) for event in scene["events"]]
                (a0, b0), (a1, b1) = subjects
                edits += [(a0, b0, text[a1:b1]), (a1, b1, text[a0:b0])]
            contrasts.append(_rewrite(text, edits))
    return contrasts


__all__ = ["CONTRAST_FACTORS", "contrast_captions"]
