"""Scene sampling for the built-in synthetic benchmark: objects, events, and families of hard negatives.

A *scene* is a JSON-serialisable dict (it is stored verbatim in `metadata.json`):

    {"kind": "single" | "companion" | "sequence" | "pair",
     "objects":    [{"shape", "colour", "size", "position": [x, y]}, ...],   # 1-2 described objects
     "events":     [{"object": i, "action": a}, ...],                        # 1-2 events, in temporal order
     "distractor": {"shape", "colour", "size", "position", "drift"} | None,  # never mentioned
     "background": {"colour", "texture", ...}}

Positions are fractions of the frame (x to the right, y down). The four kinds:

| kind | objects | events | example |
|---|---|---|---|
| `single` | 1 | 1 | a small red circle moves left |
| `companion` | 2 | 1 (object 0) | a small red circle moves left next to a large blue square |
| `sequence` | 1 | 2 (same object) | a small red circle moves left, then it grows |
| `pair` | 2 | 2 (object 0, then object 1) | a small red circle moves left, then a large blue square grows |

With one event it fills most of the clip; with two, the first fills the first half and the second the second half.

A *family* is a base scene plus variants that each differ from the base in exactly one described factor:
`colour`, `shape` or `size` of one object, the action of one event (`motion`), or the `order` of the two events.
Undescribed things (background, distractor, start positions) are shared by the whole family, so the factor is
the only described difference. Families are sampled so that a full caption is true of its own video only, within
its split (`DescriptionIndex`): "a small red circle moves left" never shares a split with "a small red circle moves
left, then it grows".

The captions of a scene are written by `processing.synthetic.captions`; this module knows no words. What a caption
states is still defined here, as facts (`scene_facts`, `scene_claims`), because families are sampled against it.
"""

import copy
import itertools
import logging

import numpy as np

logger = logging.getLogger(__name__)

# Well-separated, saturated colours (RGB); backgrounds are dark and muted so each stays clearly visible.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 185, 60),
    "blue": (45, 90, 235),
    "yellow": (240, 215, 35),
    "magenta": (215, 50, 205),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle", "cross", "star")
# Spinning a rotationally symmetric shape would be invisible.
SYMMETRIC_SHAPES = frozenset({"circle"})
SIZES = ("small", "large")
# Radius (fraction of the frame) of each size; "grow"/"shrink" scale it over the event.
SIZE_RADIUS = {"small": 0.09, "large": 0.16}

ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink", "spin", "appear", "disappear")
OPPOSITE = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "grow": "shrink",
    "shrink": "grow",
    "appear": "disappear",
    "disappear": "appear",
}
MOVES = {"move_left": (-1.0, 0.0), "move_right": (1.0, 0.0), "move_up": (0.0, -1.0), "move_down": (0.0, 1.0)}
MOVE_DISTANCE = 0.3  # fraction of the frame covered by one move event
GROW_FACTOR = 1.7
SHRINK_FACTOR = 0.5
SPIN_DEGREES = 180.0
DISTRACTOR_DRIFT = 0.08

KINDS = ("single", "companion", "sequence", "pair")
KIND_WEIGHTS = (0.15, 0.2, 0.3, 0.35)
FACTORS = ("colour", "shape", "size", "motion", "order")


# ---------------------------------------------------------------------------------------------------------------
# Scene geometry


def event_windows(num_events: int) -> list[tuple[float, float]]:
    """The (start, end) of each event as fractions of the clip: one event fills most of it, two share it in halves."""
    if num_events == 1:
        return [(0.1, 0.9)]
    return [(0.05, 0.45), (0.55, 0.95)]


def object_states(scene: dict, times: np.ndarray) -> list[dict]:
    """
    Per described object, its state at each time in `times` (fractions of the clip, shape `(T,)`): `x`, `y`,
    `radius` (fractions of the frame), `angle` (degrees) and `alpha` (opacity in [0, 1]), each an array `(T,)`.
    """
    windows = event_windows(len(scene["events"]))
    states = []
    for index, obj in enumerate(scene["objects"]):
        x = np.full(times.shape, float(obj["position"][0]))
        y = np.full(times.shape, float(obj["position"][1]))
        radius = np.full(times.shape, SIZE_RADIUS[obj["size"]])
        angle = np.zeros(times.shape)
        own = [event["action"] for event in scene["events"] if event["object"] == index]
        alpha = np.full(times.shape, 0.0 if own and own[0] == "appear" else 1.0)
        for event, (start, end) in zip(scene["events"], windows):
            if event["object"] != index:
                continue
            progress = np.clip((times - start) / (end - start), 0.0, 1.0)
            action = event["action"]
            if action in MOVES:
                dx, dy = MOVES[action]
                x = x + dx * MOVE_DISTANCE * progress
                y = y + dy * MOVE_DISTANCE * progress
            elif action == "grow":
                radius = radius * (1.0 + (GROW_FACTOR - 1.0) * progress)
            elif action == "shrink":
                radius = radius * (1.0 + (SHRINK_FACTOR - 1.0) * progress)
            elif action == "spin":
                angle = angle + SPIN_DEGREES * progress
            elif action == "appear":
                alpha = _smoothstep(progress)
            elif action == "disappear":
                alpha = np.where(times >= start, 1.0 - _smoothstep(progress), alpha)
        states.append({"x": x, "y": y, "radius": radius, "angle": angle, "alpha": alpha})
    return states


def distractor_state(distractor: dict, times: np.ndarray) -> dict:
    """The distractor drifts slowly in a straight line and never changes otherwise."""
    dx, dy = distractor["drift"]
    return {
        "x": distractor["position"][0] + dx * times,
        "y": distractor["position"][1] + dy * times,
        "radius": np.full(times.shape, SIZE_RADIUS[distractor["size"]]),
        "angle": np.zeros(times.shape),
        "alpha": np.ones(times.shape),
    }


def _smoothstep(p: np.ndarray) -> np.ndarray:
    return p * p * (3.0 - 2.0 * p)


def is_valid(scene: dict) -> bool:
    """Whether a scene can be drawn and described without contradiction."""
    objects, events = scene["objects"], scene["events"]
    if len({(obj["colour"], obj["shape"]) for obj in objects}) != len(objects):
        return False  # two objects that only differ in size would be hard to refer to
    for index, obj in enumerate(objects):
        own = [event["action"] for event in events if event["object"] == index]
        if "spin" in own and obj["shape"] in SYMMETRIC_SHAPES:
            return False
        if len(own) != len(set(own)):
            return False  # "moves left, then moves left" says nothing new
        if "appear" in own[1:] or "disappear" in own[:-1]:
            return False  # an object must be absent before it appears and cannot act after it disappears
    return True


def _path_extent(scene: dict, index: int, times: np.ndarray) -> tuple[float, float, float, float, float]:
    """Displacement range of object `index` from its start (dx_min, dx_max, dy_min, dy_max) and its largest radius."""
    probe = copy.deepcopy(scene)
    for obj in probe["objects"]:  # start positions may not be chosen yet
        obj["position"] = [0.0, 0.0]
    state = object_states(probe, times)[index]
    return state["x"].min(), state["x"].max(), state["y"].min(), state["y"].max(), state["radius"].max()


# ---------------------------------------------------------------------------------------------------------------
# Families


def _sample_object(rng: np.random.Generator, avoid: list[dict]) -> dict:
    taken = {(obj["colour"], obj["shape"]) for obj in avoid}
    while True:
        obj = {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "colour": list(COLOURS)[rng.integers(len(COLOURS))],
            "size": SIZES[rng.integers(len(SIZES))],
        }
        if (obj["colour"], obj["shape"]) not in taken:
            return obj


def _sample_kind(rng: np.random.Generator) -> str:
    return KINDS[rng.choice(len(KINDS), p=KIND_WEIGHTS)]


def _sample_base(rng: np.random.Generator, kind: str | None = None) -> dict:
    kind = kind or _sample_kind(rng)
    objects = [_sample_object(rng, [])]
    if kind in ("companion", "pair"):
        objects.append(_sample_object(rng, objects))
    while True:
        if kind in ("single", "companion"):
            events = [{"object": 0, "action": ACTIONS[rng.integers(len(ACTIONS))]}]
        elif kind == "sequence":
            first, second = rng.choice(len(ACTIONS), size=2, replace=False)
            events = [{"object": 0, "action": ACTIONS[first]}, {"object": 0, "action": ACTIONS[second]}]
        else:
            events = [
                {"object": 0, "action": ACTIONS[rng.integers(len(ACTIONS))]},
                {"object": 1, "action": ACTIONS[rng.integers(len(ACTIONS))]},
            ]
        scene = {"kind": kind, "objects": objects, "events": events}
        if is_valid(scene):
            return scene


def _make_variant(rng: np.random.Generator, base: dict, factor: str) -> tuple[dict, dict] | None:
    """A copy of `base` that differs in exactly `factor`, and a description of the change; None if impossible."""
    scene = copy.deepcopy(base)
    if factor in ("colour", "shape", "size"):
        index = int(rng.integers(len(scene["objects"])))
        obj = scene["objects"][index]
        choices = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES)}[factor]
        old = obj[factor]
        choices = [choice for choice in choices if choice != old]
        new = choices[rng.integers(len(choices))]
        obj[factor] = new
        detail = {"object": index, "from": old, "to": new}
    elif factor == "motion":
        index = int(rng.integers(len(scene["events"])))
        event = scene["events"][index]
        old = event["action"]
        # Half the time the opposite action (left <-> right, grow <-> shrink): the hardest negative.
        if old in OPPOSITE and rng.random() < 0.5:
            new = OPPOSITE[old]
        else:
            new = ACTIONS[rng.integers(len(ACTIONS))]
        if new == old:
            return None
        event["action"] = new
        detail = {"event": index, "from": old, "to": new}
    elif factor == "order":
        if len(scene["events"]) != 2:
            return None
        scene["events"] = scene["events"][::-1]
        detail = {"from": [0, 1], "to": [1, 0]}
    else:
        raise ValueError(f"Unknown factor {factor!r}; expected one of {FACTORS}.")
    # A variant must change what a full caption states (the same test as comparing canonical captions, since
    # the canonical wording is one-to-one with the claims, without needing the caption module).
    if not is_valid(scene) or scene_claims(scene) == scene_claims(base):
        return None
    return scene, detail


def _feasible_starts(members: list[dict], index: int, times: np.ndarray) -> tuple[float, float, float, float]:
    """Interval of start positions of object `index` that keeps its centre in the frame in every member."""
    low_x, high_x, low_y, high_y = 0.0, 1.0, 0.0, 1.0
    for scene in members:
        dx_min, dx_max, dy_min, dy_max, radius = _path_extent(scene, index, times)
        margin = 0.8 * radius  # may touch the border, never leave the frame
        low_x, high_x = max(low_x, margin - dx_min), min(high_x, 1.0 - margin - dx_max)
        low_y, high_y = max(low_y, margin - dy_min), min(high_y, 1.0 - margin - dy_max)
    return low_x, high_x, low_y, high_y


def _fits(members: list[dict], times: np.ndarray) -> bool:
    for index in range(len(members[0]["objects"])):
        low_x, high_x, low_y, high_y = _feasible_starts(members, index, times)
        if low_x > high_x or low_y > high_y:
            return False
    return True


def _place_objects(rng: np.random.Generator, members: list[dict], times: np.ndarray) -> list[list[float]]:
    """Start positions shared by the family: inside the frame for every member, objects apart where possible."""
    best, best_gap = None, -np.inf
    for _ in range(20):
        positions = []
        for index in range(len(members[0]["objects"])):
            low_x, high_x, low_y, high_y = _feasible_starts(members, index, times)
            positions.append([round(float(rng.uniform(low_x, high_x)), 4), round(float(rng.uniform(low_y, high_y)), 4)])
        if len(positions) == 1:
            return positions
        radii = [SIZE_RADIUS[obj["size"]] for obj in members[0]["objects"]]
        gap = np.hypot(positions[0][0] - positions[1][0], positions[0][1] - positions[1][1]) - sum(radii)
        if gap > 0.05:
            return positions
        if gap > best_gap:
            best, best_gap = positions, gap
    return best


def _place_distractor(rng: np.random.Generator, members: list[dict], times: np.ndarray) -> dict:
    used = {obj["colour"] for scene in members for obj in scene["objects"]}
    colours = [colour for colour in COLOURS if colour not in used] or list(COLOURS)
    distractor = {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "colour": colours[rng.integers(len(colours))],
        "size": "small" if rng.random() < 0.7 else "large",
    }
    angle = rng.uniform(0, 2 * np.pi)
    distractor["drift"] = [round(float(DISTRACTOR_DRIFT * f(angle)), 4) for f in (np.cos, np.sin)]
    # Put it where it overlaps the described objects the least, in every member of the family.
    paths = []
    for scene in members:
        for state in object_states(scene, times):
            paths.append(np.stack([state["x"], state["y"]], axis=1))
    paths = np.concatenate(paths)  # (P, 2)
    best, best_distance = None, -1.0
    for _ in range(16):
        start = rng.uniform(0.15, 0.85, size=2)
        track = start[None, :] + times[:, None] * np.asarray(distractor["drift"])[None, :]  # (T, 2)
        distance = np.min(np.linalg.norm(track[:, None, :] - paths[None, :, :], axis=-1))
        if distance > best_distance:
            best, best_distance = start, distance
    distractor["position"] = [round(float(best[0]), 4), round(float(best[1]), 4)]
    return distractor


def _sample_background(rng: np.random.Generator) -> dict:
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.1, 0.45), rng.uniform(0.12, 0.32)
    texture = ("flat", "stripes", "checker", "gradient", "blotches")[rng.integers(5)]
    pan = [0.0, 0.0]
    if rng.random() < 0.3:  # a slow "camera pan": motion that no caption is about
        angle = rng.uniform(0, 2 * np.pi)
        pan = [round(float(0.1 * np.cos(angle)), 4), round(float(0.1 * np.sin(angle)), 4)]
    return {
        "colour": [int(round(255 * channel)) for channel in _hsv_to_rgb(hue, saturation, value)],
        "texture": texture,
        "amplitude": round(float(rng.uniform(6, 18)), 2),
        "period": round(float(rng.uniform(0.08, 0.25)), 4),
        "orientation": float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        "pan": pan,
        "seed": int(rng.integers(2**31)),
    }


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _object_key(obj: dict) -> tuple[str, str, str]:
    return (obj["size"], obj["colour"], obj["shape"])


def scene_facts(scene: dict) -> frozenset:
    """
    What is true of a video, as facts a caption can state: each visible object (described or distractor), each
    event (subject, action) and, with two events, their order.
    """
    facts = {("object", _object_key(obj)) for obj in scene["objects"]}
    if scene.get("distractor"):
        facts.add(("object", _object_key(scene["distractor"])))
    events = [(_object_key(scene["objects"][event["object"]]), event["action"]) for event in scene["events"]]
    facts.update(("event", *event) for event in events)
    if len(events) == 2:
        facts.add(("order", events[0], events[1]))
    return frozenset(facts)


def scene_claims(scene: dict) -> frozenset:
    """The facts a full caption of `scene` states: its events, their order, and the companion it is next to."""
    facts = scene_facts(scene)
    claims = {fact for fact in facts if fact[0] != "object"}
    if scene["kind"] == "companion":
        claims.add(("object", _object_key(scene["objects"][1])))
    return frozenset(claims)


def event_claims(scene: dict, event_indices: list[int]) -> frozenset:
    """The facts a caption that describes only the events `event_indices` states (a temporal cue aside)."""
    if len(event_indices) == len(scene["events"]):
        return scene_claims(scene)
    events = [scene["events"][i] for i in event_indices]
    return frozenset(("event", _object_key(scene["objects"][e["object"]]), e["action"]) for e in events)


class DescriptionIndex:
    """
    The facts and claims of the videos of one split, to keep full captions unambiguous: a video may not be
    added if a full caption of it would also be true of a video already there (its claims are a subset of that
    video's facts), or the other way round. E.g. "a small red circle moves left" cannot sit in a split that also
    holds "a small red circle moves left, then it grows".
    """

    def __init__(self):
        self.claims: set[frozenset] = set()
        self.by_fact: dict[tuple, set[int]] = {}
        self.size = 0

    def _claimed_by_any(self, facts: frozenset) -> bool:
        # Is some registered claim set a subset of `facts`? Claims have at most 3 facts: enumerate small subsets.
        items = sorted(facts, key=repr)
        return any(
            frozenset(combo) in self.claims
            for size in range(1, min(3, len(items)) + 1)
            for combo in itertools.combinations(items, size)
        )

    def videos_with(self, facts) -> set[int]:
        """Indices (in order of addition) of the videos of which all `facts` are true."""
        found = None
        for fact in facts:
            found = set(self.by_fact.get(fact, ())) if found is None else found & self.by_fact.get(fact, set())
            if not found:
                return set()
        return found if found is not None else set(range(self.size))

    def conflicts(self, scenes: list[dict]) -> bool:
        facts = [scene_facts(scene) for scene in scenes]
        claims = [scene_claims(scene) for scene in scenes]
        for i in range(len(scenes)):
            if self.videos_with(claims[i]) or self._claimed_by_any(facts[i]):
                return True
            if any(j != i and claims[i] <= facts[j] for j in range(len(scenes))):
                return True
        return False

    def add(self, scene: dict) -> int:
        index = self.size
        self.claims.add(scene_claims(scene))
        for fact in scene_facts(scene):
            self.by_fact.setdefault(fact, set()).add(index)
        self.size += 1
        return index


def sample_family(
    rng: np.random.Generator,
    max_size: int,
    num_frames: int = 16,
    index: DescriptionIndex | None = None,
    attempts: int = 100,
) -> list[dict]:
    """
    One family: the base scene first, then up to `max_size - 1` variants that each differ from the base in one
    factor. Returns a list of `{"scene", "factor", "detail"}` (`factor`/`detail` are None for the base).

    `index` holds the videos already in the split and is updated in place: a family whose full captions would
    also be true of another video of the split (or the other way round) is re-sampled, up to `attempts` times.
    """
    index = DescriptionIndex() if index is None else index
    times = np.linspace(0.0, 1.0, num_frames)
    family, fallback = None, None
    kind = _sample_kind(rng)
    for attempt in range(attempts):
        if attempt == attempts // 2:
            kind = None  # this kind's space is used up in this split: let any kind fill the place
        family = _sample_family_once(rng, max_size, times, kind, index)
        if family is None:
            continue
        # The distractor adds a fact (an object) only once placed: check the whole family again.
        if not index.conflicts([member["scene"] for member in family]):
            break
        fallback, family = family, None
    if family is None:
        family = fallback or _sample_family_once(rng, max_size, times, None, DescriptionIndex())
        logger.debug("Kept a family with ambiguous full captions after %d attempts.", attempts)
    for member in family:
        index.add(member["scene"])
    return family


def _sample_family_once(
    rng: np.random.Generator, max_size: int, times: np.ndarray, kind: str | None, index: DescriptionIndex
) -> list[dict] | None:
    """A family whose members do not conflict with `index` (see `DescriptionIndex`), or None if the base does."""
    base = _sample_base(rng, kind)
    if index.conflicts([base]):
        return None
    members, factors, details = [base], [None], [None]
    wanted = min(max_size, int(rng.integers(3, 6))) - 1  # families of 3 to 5 videos
    available = ["colour", "shape", "size", "motion"] + (["order"] if len(base["events"]) == 2 else [])
    order = [available[i] for i in rng.permutation(len(available))]
    if "order" in available:  # order swaps are the rarest kind of negative: always make one when possible
        order.remove("order")
        order.insert(0, "order")
    for tries in range(40):
        if len(members) - 1 >= wanted:
            break
        factor = order[tries % len(order)]
        made = _make_variant(rng, base, factor)
        if made is None:
            continue
        scene, detail = made
        if index.conflicts(members + [scene]) or not _fits(members + [scene], times):
            continue
        members.append(scene)
        factors.append(factor)
        details.append(detail)
    positions = _place_objects(rng, members, times)
    for scene in members:
        for obj, position in zip(scene["objects"], positions):
            obj["position"] = position
    distractor = _place_distractor(rng, members, times) if rng.random() < 0.8 else None
    background = _sample_background(rng)
    family = []
    for scene, factor, detail in zip(members, factors, details):
        scene["distractor"] = copy.deepcopy(distractor)
        scene["background"] = copy.deepcopy(background)
        family.append({"scene": scene, "factor": factor, "detail": detail})
    return family


__all__ = [
    "ACTIONS",
    "COLOURS",
    "DescriptionIndex",
    "FACTORS",
    "KINDS",
    "SHAPES",
    "SIZES",
    "SIZE_RADIUS",
    "distractor_state",
    "event_claims",
    "event_windows",
    "is_valid",
    "object_states",
    "sample_family",
    "scene_claims",
    "scene_facts",
]
