"""Captions of the synthetic benchmark's scenes (`processing.synthetic.scenes`): paraphrases from templates and
synonyms, partial captions, paragraphs and one canonical description per scene.

One-event videos get four distinct full captions. Two-event videos get three full ones plus one *partial* caption
per event, which describes that event only (one of the two with a temporal cue such as "at first"). Every video also
gets a paragraph, one sentence per event in temporal order. All randomness comes from the `rng` passed in, so the
captions of a video depend only on its scene and its generator.
"""

import numpy as np

from .scenes import COLOURS

# Synonyms: the first entry of each list is the canonical word, used in `canonical_caption`.
COLOUR_WORDS = {name: [name] for name in COLOURS}
COLOUR_WORDS["magenta"] = ["magenta", "pink"]
SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big"]}
SHAPE_WORDS = {
    "circle": ["circle", "disc", "round shape"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "triangular shape"],
    "cross": ["cross", "plus sign", "plus shape"],
    "star": ["star", "star shape"],
}
ACTION_PHRASES = {
    "move_left": ["moves left", "slides to the left", "heads leftward", "travels left", "drifts to the left"],
    "move_right": ["moves right", "slides to the right", "heads rightward", "travels right", "drifts to the right"],
    "move_up": ["moves up", "rises", "goes upward", "drifts up", "climbs upward"],
    "move_down": ["moves down", "sinks", "drops down", "goes downward", "slides down"],
    "grow": ["grows", "gets bigger", "expands", "grows larger", "swells"],
    "shrink": ["shrinks", "gets smaller", "contracts", "becomes smaller", "dwindles"],
    "spin": ["spins", "rotates", "turns around", "spins around", "twirls"],
    "appear": ["appears", "fades in", "shows up", "comes into view", "pops into view"],
    "disappear": ["disappears", "fades out", "vanishes", "fades away", "goes out of view"],
}
STATIC_PHRASES = ["stays still", "does not move", "remains in place", "stays put"]

# Caption templates. {S}/{S1}/{S2}: a noun phrase with its article ("a small red circle"); {V}, {V1}, {V2}: verb
# phrases; {C}: the static companion; {R}: a verb phrase for staying still.
SINGLE_TEMPLATES = [
    "{S} {V}.",
    "We see {S} that {V}.",
    "There is {S}; it {V}.",
    "In this clip, {S} {V}.",
    "Here {S} {V}.",
    "The video shows {S} that {V}.",
]
COMPANION_TEMPLATES = [
    "{S} {V} next to {C}.",
    "Beside {C}, {S} {V}.",
    "{S} {V} while {C} {R}.",
    "{C} {R} as {S} {V}.",
    "With {C} nearby, {S} {V}.",
    "There are {S} and {C}; only the first one {V}.",
]
SEQUENCE_TEMPLATES = [
    "{S} {V1} and then {V2}.",
    "{S} {V1}, then {V2}.",
    "First {S} {V1}; after that it {V2}.",
    "{S} {V1} before it {V2}.",
    "{S} {V2} after it {V1}.",
    "{S} first {V1} and finally {V2}.",
]
PAIR_TEMPLATES = [
    "{S1} {V1}, then {S2} {V2}.",
    "First {S1} {V1}, and afterwards {S2} {V2}.",
    "{S2} {V2} after {S1} {V1}.",
    "{S1} {V1} before {S2} {V2}.",
    "{S1} {V1}; next, {S2} {V2}.",
]
PARTIAL_TEMPLATES = [  # one event of a two-event video, without a temporal cue
    "{S} {V}.",
    "We see {S} that {V}.",
    "In this clip, {S} {V}.",
]
PARTIAL_CUED_TEMPLATES = {  # ... and with one that says which half of the clip
    0: ["At first, {S} {V}.", "{S} {V} at the beginning.", "Early in the clip, {S} {V}."],
    1: ["At the end, {S} {V}.", "Finally, {S} {V}.", "Later, {S} {V}."],
}
PARAGRAPH_FIRST = ["{S} {V}.", "First, {S} {V}.", "At the start, {S} {V}."]
PARAGRAPH_NEXT = ["Then {S} {V}.", "After that, {S} {V}.", "Next, {S} {V}."]

NUM_FULL_CAPTIONS = {1: 4, 2: 3}  # per number of events; two-event videos also get one partial caption per event


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(obj: dict, rng: np.random.Generator | None = None, determiner: str | None = None) -> str:
    """`a small red circle`; with `rng`, synonyms and the determiner ("a"/"the") are sampled."""
    pick = (lambda words: words[0]) if rng is None else (lambda words: words[rng.integers(len(words))])
    phrase = f"{pick(SIZE_WORDS[obj['size']])} {pick(COLOUR_WORDS[obj['colour']])} {pick(SHAPE_WORDS[obj['shape']])}"
    if determiner is None:
        determiner = "a" if rng is None or rng.random() < 0.7 else "the"
    if determiner == "a":
        determiner = _article(phrase)
    return f"{determiner} {phrase}"


def verb_phrase(action: str, rng: np.random.Generator | None = None) -> str:
    phrases = ACTION_PHRASES[action]
    return phrases[0] if rng is None else phrases[rng.integers(len(phrases))]


def _fill(template: str, **parts: str) -> str:
    text = template.format(**parts)
    return text[0].upper() + text[1:]


def canonical_caption(scene: dict) -> str:
    """The one deterministic full description (first synonyms, fixed template): the identity of a video's content."""
    objects, events = scene["objects"], scene["events"]
    first = f"{noun_phrase(objects[events[0]['object']], determiner='a')} {verb_phrase(events[0]['action'])}"
    if len(events) == 1:
        if len(objects) == 2:
            return f"{first} next to {noun_phrase(objects[1], determiner='a')}"
        return first
    second_object = events[1]["object"]
    if second_object == events[0]["object"]:
        return f"{first}, then it {verb_phrase(events[1]['action'])}"
    return f"{first}, then {noun_phrase(objects[second_object], determiner='a')} {verb_phrase(events[1]['action'])}"


def _full_caption(scene: dict, rng: np.random.Generator) -> str:
    objects, events = scene["objects"], scene["events"]
    kind = scene["kind"]
    if kind == "single":
        template = SINGLE_TEMPLATES[rng.integers(len(SINGLE_TEMPLATES))]
        return _fill(template, S=noun_phrase(objects[0], rng, "a"), V=verb_phrase(events[0]["action"], rng))
    if kind == "companion":
        template = COMPANION_TEMPLATES[rng.integers(len(COMPANION_TEMPLATES))]
        return _fill(
            template,
            S=noun_phrase(objects[0], rng, "a"),
            C=noun_phrase(objects[1], rng, "a"),
            V=verb_phrase(events[0]["action"], rng),
            R=STATIC_PHRASES[rng.integers(len(STATIC_PHRASES))],
        )
    v1, v2 = verb_phrase(events[0]["action"], rng), verb_phrase(events[1]["action"], rng)
    if kind == "sequence":
        template = SEQUENCE_TEMPLATES[rng.integers(len(SEQUENCE_TEMPLATES))]
        return _fill(template, S=noun_phrase(objects[0], rng, "a"), V1=v1, V2=v2)
    template = PAIR_TEMPLATES[rng.integers(len(PAIR_TEMPLATES))]
    s1 = noun_phrase(objects[events[0]["object"]], rng, "a")
    s2 = noun_phrase(objects[events[1]["object"]], rng, "a")
    return _fill(template, S1=s1, S2=s2, V1=v1, V2=v2)


def _partial_caption(scene: dict, event_index: int, cued: bool, rng: np.random.Generator) -> str:
    event = scene["events"][event_index]
    templates = PARTIAL_CUED_TEMPLATES[event_index] if cued else PARTIAL_TEMPLATES
    template = templates[rng.integers(len(templates))]
    subject = noun_phrase(scene["objects"][event["object"]], rng, "a")
    return _fill(template, S=subject, V=verb_phrase(event["action"], rng))


def paragraph(scene: dict, rng: np.random.Generator) -> list[str]:
    """One sentence per event, in temporal order (a companion is mentioned in the sentence of its video's event)."""
    events = scene["events"]
    if len(events) == 1:
        return [_full_caption(scene, rng)]
    sentences = []
    for index, event in enumerate(events):
        templates = PARAGRAPH_FIRST if index == 0 else PARAGRAPH_NEXT
        template = templates[rng.integers(len(templates))]
        subject = noun_phrase(scene["objects"][event["object"]], rng, "a" if index == 0 else None)
        if index > 0 and event["object"] == events[0]["object"]:
            subject = noun_phrase(scene["objects"][event["object"]], rng, "the")
        sentences.append(_fill(template, S=subject, V=verb_phrase(event["action"], rng)))
    return sentences


def describe(scene: dict, rng: np.random.Generator) -> dict:
    """
    The captions of one video: `{"captions": [{"text", "partial", "events"}], "paragraph": [sentences],
    "canonical": str}`. `events` lists the indices of the events a caption describes. One-event videos get four
    distinct full captions; two-event videos three full ones and one partial caption per event (the first or the
    second of them, at random, with a temporal cue such as "at first").
    """
    num_events = len(scene["events"])
    captions, seen = [], set()
    wanted = NUM_FULL_CAPTIONS[num_events]
    for _ in range(200):
        if len(captions) == wanted:
            break
        text = _full_caption(scene, rng)
        if text not in seen:
            seen.add(text)
            captions.append({"text": text, "partial": False, "events": list(range(num_events))})
    if num_events == 2:
        cued_event = int(rng.integers(2))
        for event_index in range(2):
            for _ in range(50):
                text = _partial_caption(scene, event_index, event_index == cued_event, rng)
                if text not in seen:
                    break
            seen.add(text)
            captions.append({"text": text, "partial": True, "events": [event_index]})
    return {"captions": captions, "paragraph": paragraph(scene, rng), "canonical": canonical_caption(scene)}


__all__ = [
    "ACTION_PHRASES",
    "COLOUR_WORDS",
    "NUM_FULL_CAPTIONS",
    "SHAPE_WORDS",
    "SIZE_WORDS",
    "STATIC_PHRASES",
    "canonical_caption",
    "describe",
    "noun_phrase",
    "paragraph",
    "verb_phrase",
]
