"""Per-family diagnostics: how often a caption's own video outscores its hard negatives, family by family.

The built-in synthetic benchmark groups videos into families: a base video and variants that each differ from it in
exactly one described factor (an object's colour, shape or size, one motion, or the order of two events), and
two-event videos also have partial captions that describe one event only. Plain R@K mixes all of these errors; this
module scores each kind on its own.

Pairs scored, for every caption `t` of a video `q` that has a family sibling `s` (another video of its family):

- a full caption of `q` against a sibling that differs from `q` in exactly one factor (base vs variant): counted
  under that factor (`colour`, `shape`, `size`, `motion`, `order`); two variants of one base differ in two factors
  and are not counted;
- a partial caption of `q` against every sibling: counted under `partial` (an evaluation split keeps only partial
  captions true of their own video alone, so every sibling is a negative).

A pair is won when `scores[t, q] > scores[t, s]` (a tie counts one half: the expected outcome of an arbitrary
tie-break). Each family's win rate is its won pairs over its pairs, in percent (50% = chance); `all` pools every pair.
It is computed on any (texts, videos) score matrix: embedding similarity, or the reranked t2v scores.

The caption pairs of a family are not independent: every caption of `q` meets the same sibling `s`, so a family's
evidence is its number of distinct video pairs {q, s} (`video_pairs`), often a tenth of its caption pairs.
`family_gain_intervals` compares two score matrices (reranked against embedding) family by family with a bootstrap
over those video pairs, so a gain resting on a handful of videos shows a wide interval.

The labels come from a dataset carrying the optional columns `FAMILY_COLUMNS` (the synthetic builder adds them to
its evaluation splits); `FamilyLabels.from_dataset` returns None for datasets without them.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Optional dataset columns: the video's family id, the factor that sets it apart from its family's base ("" for the
# base itself), and per caption whether it is partial (aligned with the `captions` column).
FAMILY_COLUMNS = ("family", "family_factor", "caption_partial")
PARTIAL = "partial"
ALL = "all"
# Reporting order; any other factor name a dataset carries follows these.
FAMILY_ORDER = ("colour", "shape", "size", "motion", "order", PARTIAL)


@dataclass
class FamilyLabels:
    """
    Family labels of an evaluation gallery.

    Args:
        video_family: (videos,) family id of each video.
        video_factor: (videos,) the factor that sets each video apart from its family's base; `""` for the base.
        caption_partial: (texts,) whether each caption (in evaluation order) is partial.
    """

    video_family: Sequence[str]
    video_factor: Sequence[str]
    caption_partial: Sequence[bool]

    def __post_init__(self):
        if len(self.video_family) != len(self.video_factor):
            raise ValueError(f"FamilyLabels: video_family has {len(self.video_family)} entries but video_factor "
                             f"has {len(self.video_factor)}.")

    @classmethod
    def from_dataset(cls, dataset) -> "FamilyLabels | None":
        """Labels from a schema dataset (rows = videos) with `FAMILY_COLUMNS`, captions in row order (the order of
        `processing.batching.caption_pairs`); None when the dataset lacks any of those columns."""
        if not all(column in dataset.column_names for column in FAMILY_COLUMNS):
            return None
        partial = []
        for row, (captions, flags) in enumerate(zip(dataset["captions"], dataset["caption_partial"])):
            if len(captions) != len(flags):
                raise ValueError(f"Dataset row {row}: {len(captions)} captions but {len(flags)} caption_partial "
                                 "flags; they must be aligned.")
            partial.extend(bool(flag) for flag in flags)
        return cls(list(dataset["family"]), list(dataset["family_factor"]), partial)


def family_pairs(labels: FamilyLabels, text_to_video) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`{family: (text indices, sibling video indices)}`: the (caption, hard negative) pairs of each family."""
    text_to_video = torch.as_tensor(text_to_video).tolist()
    if len(text_to_video) != len(labels.caption_partial):
        raise ValueError(f"FamilyLabels: {len(labels.caption_partial)} caption_partial flags for "
                         f"{len(text_to_video)} captions.")
    members = defaultdict(list)
    for video, family in enumerate(labels.video_family):
        members[family].append(video)
    pairs = defaultdict(lambda: ([], []))
    for text, own in enumerate(text_to_video):
        for sibling in members[labels.video_family[own]]:
            if sibling == own:
                continue
            if labels.caption_partial[text]:
                family = PARTIAL
            else:
                factors = [labels.video_factor[own], labels.video_factor[sibling]]
                if factors.count("") != 1:  # two variants: they differ in two factors
                    continue
                family = factors[0] or factors[1]
            pairs[family][0].append(text)
            pairs[family][1].append(sibling)
    return {family: (torch.tensor(texts, dtype=torch.long), torch.tensor(siblings, dtype=torch.long))
            for family, (texts, siblings) in pairs.items()}


def family_win_rates(scores: torch.Tensor, text_to_video, labels: FamilyLabels,
                     pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, dict]:
    """
    `{family: {"win_rate": %, "pairs": n, "captions": n, "video_pairs": n}}` for each family with pairs, then `all`,
    from a (texts, videos) score matrix; `video_pairs` counts distinct unordered {own video, sibling} pairs.
    `pairs` (from `family_pairs`) may be passed to score several matrices.
    """
    pairs = family_pairs(labels, text_to_video) if pairs is None else pairs
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    scores = scores.float().cpu()
    results, won_all, texts_all, units_all = {}, [], [], []
    for family in _ordered(pairs):
        texts, siblings = pairs[family]
        won = _won(scores, text_to_video, texts, siblings)
        units = _video_pair_ids(text_to_video[texts], siblings, len(labels.video_family))
        results[family] = _summary(won, texts, units)
        won_all.append(won)
        texts_all.append(texts)
        units_all.append(units)
    if won_all:
        results[ALL] = _summary(torch.cat(won_all), torch.cat(texts_all), torch.cat(units_all))
    return results


def family_gain_intervals(scores_a: torch.Tensor, scores_b: torch.Tensor, text_to_video, labels: FamilyLabels,
                          pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                          num_replicates: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """
    Win rate of `scores_a` minus that of `scores_b` (percentage points) on each family's pairs, then `all`, with a
    percentile interval from a bootstrap over the family's video pairs: a replicate draws video pairs with
    replacement and takes every caption pair of each drawn video pair, for both matrices (paired), and the
    difference is won pairs over pairs, as in `family_win_rates`. `{family: {"gain", "low", "high", "video_pairs",
    "decided"}}`, `decided` being whether the interval excludes 0.

    Captions of one video pair are resampled together because they are not independent evidence (see the module
    docstring); a plain bootstrap over caption pairs would give intervals several times too narrow. Hand-written:
    `scipy.stats.bootstrap` (not a dependency) resamples single observations, and `paired_bootstrap` here weighs
    every query alike, where clusters of unequal size must be pooled (won pairs over pairs).
    """
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"family_gain_intervals: scores_a has shape {tuple(scores_a.shape)} but scores_b "
                         f"{tuple(scores_b.shape)}; both must score the same (texts, videos).")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    if num_replicates < 1:
        raise ValueError(f"num_replicates must be positive, got {num_replicates}.")
    pairs = family_pairs(labels, text_to_video) if pairs is None else pairs
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    scores_a, scores_b = scores_a.float().cpu(), scores_b.float().cpu()
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    results, pooled = {}, []
    for family in _ordered(pairs):
        texts, siblings = pairs[family]
        difference = (_won(scores_a, text_to_video, texts, siblings)
                      - _won(scores_b, text_to_video, texts, siblings)).numpy().astype(np.float64)
        units = _video_pair_ids(text_to_video[texts], siblings, len(labels.video_family)).numpy()
        pooled.append((difference, units))
        results[family] = _cluster_bootstrap(difference, units, rng, num_replicates, tail)
    if pooled:
        results[ALL] = _cluster_bootstrap(np.concatenate([d for d, _ in pooled]),
                                          np.concatenate([u for _, u in pooled]), rng, num_replicates, tail)
    return results


def _cluster_bootstrap(difference: np.ndarray, units: np.ndarray, rng: np.random.Generator, num_replicates: int,
                       tail: float) -> dict:
    _, cluster = np.unique(units, return_inverse=True)
    clusters = int(cluster.max()) + 1
    sums = np.bincount(cluster, weights=difference, minlength=clusters)
    counts = np.bincount(cluster, minlength=clusters).astype(np.float64)
    drawn = rng.integers(0, clusters, size=(num_replicates, clusters))
    replicates = 100.0 * sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    low, high = (float(value) for value in np.quantile(replicates, [tail, 1 - tail]))
    gain = 100.0 * float(difference.mean())
    return {"gain": gain, "low": low, "high": high, "video_pairs": clusters, "decided": low > 0 or high < 0}


def _ordered(pairs: Mapping) -> list[str]:
    return sorted(pairs, key=lambda name: (FAMILY_ORDER.index(name) if name in FAMILY_ORDER else len(FAMILY_ORDER),
                                           name))


def _won(scores: torch.Tensor, text_to_video: torch.Tensor, texts: torch.Tensor, siblings: torch.Tensor):
    """1 per won (caption, sibling) pair, 0.5 per tie, 0 per loss; `scores` already float on the CPU."""
    own_scores, sibling_scores = scores[texts, text_to_video[texts]], scores[texts, siblings]
    return (own_scores > sibling_scores).float() + 0.5 * (own_scores == sibling_scores).float()


def _video_pair_ids(own: torch.Tensor, siblings: torch.Tensor, num_videos: int) -> torch.Tensor:
    """One id per unordered {own, sibling} video pair."""
    return torch.minimum(own, siblings) * num_videos + torch.maximum(own, siblings)


def top1_breakdown(scores: torch.Tensor, text_to_video, labels: FamilyLabels) -> dict[str, dict]:
    """
    Where each caption's top-ranked video falls, from a (texts, videos) score matrix: `correct` (its own video), a
    family sibling (`sibling <factor>` when base and variant differ in that one factor, `sibling partial` for a
    partial caption, `sibling two variants` for two variants of one base, which differ in two factors or
    in two values of one), or `other family`.
    `{bucket: {"captions": n, "percent": %}}`, buckets in a fixed order, empty ones left out.

    Family win rates score each caption against its siblings only; this says how many of the R@1 errors are
    sibling confusions at all, i.e. how much of R@1 the hard-negative families can explain.
    """
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    if len(text_to_video) != len(labels.caption_partial):
        raise ValueError(f"top1_breakdown: {len(labels.caption_partial)} caption_partial flags for "
                         f"{len(text_to_video)} captions.")
    if scores.shape != (len(text_to_video), len(labels.video_family)):
        raise ValueError(f"top1_breakdown: scores of shape {tuple(scores.shape)}, expected "
                         f"({len(text_to_video)} captions, {len(labels.video_family)} videos).")
    top = scores.float().cpu().argmax(dim=1).tolist()
    counts = defaultdict(int)
    for text, (own, first) in enumerate(zip(text_to_video.tolist(), top)):
        if first == own:
            counts["correct"] += 1
        elif labels.video_family[first] != labels.video_family[own]:
            counts["other family"] += 1
        elif labels.caption_partial[text]:
            counts[f"sibling {PARTIAL}"] += 1
        else:
            factors = [factor for factor in (labels.video_factor[own], labels.video_factor[first]) if factor]
            counts["sibling two variants" if len(factors) == 2 else f"sibling {factors[0]}"] += 1
    order = ["correct"] + [f"sibling {name}" for name in FAMILY_ORDER] + ["sibling two variants", "other family"]
    buckets = order + sorted(set(counts) - set(order))
    return {bucket: {"captions": counts[bucket], "percent": 100.0 * counts[bucket] / len(top)}
            for bucket in buckets if counts[bucket]}


def format_top1_table(results: Mapping[str, Mapping[str, Mapping]], digits: int = 1) -> str:
    """Markdown table of `top1_breakdown` results: one row per bucket, `% (captions)` per run."""
    runs = list(results)
    buckets = list(dict.fromkeys(bucket for run in runs for bucket in results[run]))
    lines = ["| top-ranked video | " + " | ".join(f"{run}: % (captions)" for run in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    for bucket in buckets:
        cells = [f"{results[run][bucket]['percent']:.{digits}f} ({results[run][bucket]['captions']})"
                 if bucket in results[run] else "0" for run in runs]
        lines.append(f"| {bucket} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption_text_scores(text_embeddings: torch.Tensor, text_to_video, num_videos: int) -> torch.Tensor | None:
    """
    Text-only (texts, videos) scores: each caption's mean cosine similarity to a video's captions, leaving the
    caption itself out of its own video's.

    With `family_win_rates` this asks whether the text embedding alone tells a caption's paraphrases from its
    siblings' captions. A factor the text embedding is blind to (the siblings' captions embed as close as the
    caption's own paraphrases) wins about half its pairs, and the embedding stage can then hardly win it however good
    the video tower is; a joint encoder, which reads the token sequence, still can. A mean of cosines rather than the
    cosine to a mean, so that the number of captions (one fewer for the caption's own video) does not bias the
    comparison. None when a video has fewer than 2 captions (nothing to compare a lone caption with).
    """
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    counts = torch.bincount(text_to_video, minlength=num_videos)
    if len(counts) != num_videos:
        raise ValueError(f"caption_text_scores: text_to_video names video {int(text_to_video.max())} but there are "
                         f"{num_videos} videos.")
    if bool((counts < 2).any()):
        return None
    embeddings = torch.nn.functional.normalize(text_embeddings.float().cpu(), dim=-1)
    membership = torch.nn.functional.one_hot(text_to_video, num_videos).float()
    sums = embeddings @ (embeddings.T @ membership)  # (texts, videos): the sum of cosines to each video's captions
    texts = torch.arange(len(text_to_video))
    sums[texts, text_to_video] -= (embeddings * embeddings).sum(-1)  # leave the caption itself out
    sizes = counts.float().expand_as(sums).clone()
    sizes[texts, text_to_video] -= 1
    return sums / sizes


def _summary(won: torch.Tensor, texts: torch.Tensor, units: torch.Tensor) -> dict:
    return {"win_rate": 100.0 * float(won.mean()), "pairs": int(won.numel()), "captions": int(texts.unique().numel()),
            "video_pairs": int(units.unique().numel())}


def format_family_table(results: Mapping[str, Mapping[str, Mapping]], digits: int = 1,
                        gains: Mapping[str, Mapping] | None = None, gain_label: str = "reranked - embedding") -> str:
    """
    Markdown table: one row per family, one win-rate column per run (e.g. `"embedding"`, `"reranked"`), then, with
    `gains` (`family_gain_intervals`), the difference and its interval, then the number of caption pairs, captions
    and video pairs (from the first run).
    """
    runs = list(results)
    families = list(dict.fromkeys(family for run in runs for family in results[run]))
    gain_header = [f"{gain_label} [95% CI]"] if gains else []
    header = [f"{run} win %" for run in runs] + gain_header + ["pairs", "captions", "video pairs"]
    lines = ["| family | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for family in families:
        cells = [f"{results[run][family]['win_rate']:.{digits}f}" if family in results[run] else "-" for run in runs]
        if gains:
            gain = gains.get(family)
            cells.append("-" if gain is None else
                         f"{gain['gain']:+.{digits}f} [{gain['low']:+.{digits}f}, {gain['high']:+.{digits}f}]")
        first = next(results[run][family] for run in runs if family in results[run])
        counts = [str(first.get(name, "-")) for name in ("pairs", "captions", "video_pairs")]
        lines.append(f"| {family} | " + " | ".join(cells + counts) + " |")
    return "\n".join(lines)


_COUNTS = ("video_pairs", "pairs", "captions")  # longest first: "video_pairs_x" must not parse as run "video"
_GAIN_FIELDS = ("gain_low", "gain_high", "gain")


def flatten_family_metrics(results: Mapping[str, Mapping[str, Mapping]], prefix: str,
                           gains: Mapping[str, Mapping] | None = None) -> dict[str, float]:
    """Flat metrics for the Trainer's logs and JSON files: `{prefix}_family_{run}_{family}` (win rate, %),
    `{prefix}_family_pairs_{family}` / `..._captions_{family}` / `..._video_pairs_{family}` (counts, the same for every
    run) and, with `gains`, `{prefix}_family_gain_{family}` / `..._gain_low_{family}` / `..._gain_high_{family}`."""
    flat = {}
    for run, families in results.items():
        for family, values in families.items():
            flat[f"{prefix}_family_{run}_{family}"] = values["win_rate"]
            for name in _COUNTS:
                if name in values:
                    flat[f"{prefix}_family_{name}_{family}"] = values[name]
    for family, values in (gains or {}).items():
        for name, field_name in zip(_GAIN_FIELDS, ("low", "high", "gain")):
            flat[f"{prefix}_family_{name}_{family}"] = values[field_name]
    return flat


def unflatten_family_metrics(metrics: Mapping[str, float], prefix: str) -> dict[str, dict[str, dict]]:
    """The inverse of `flatten_family_metrics` for the win rates: `{run: {family: {"win_rate", "pairs", "captions",
    "video_pairs"}}}` (counts present in `metrics` only)."""
    start, results, counts = f"{prefix}_family_", defaultdict(dict), defaultdict(dict)
    for key, value in metrics.items():
        if not key.startswith(start):
            continue
        rest = key[len(start):]
        count = next((name for name in _COUNTS if rest.startswith(name + "_")), None)
        if count is not None:
            counts[rest[len(count) + 1:]][count] = int(value)
        elif not any(rest.startswith(name + "_") for name in _GAIN_FIELDS):
            run, _, family = rest.partition("_")
            results[run][family] = {"win_rate": value}
    for families in results.values():
        for family, values in families.items():
            values.update(counts[family])
    return dict(results)


def unflatten_family_gains(metrics: Mapping[str, float], prefix: str) -> dict[str, dict]:
    """The gains of `flatten_family_metrics`: `{family: {"gain", "low", "high", "decided"}}` (empty without them)."""
    start, gains = f"{prefix}_family_", defaultdict(dict)
    for key, value in metrics.items():
        rest = key[len(start):] if key.startswith(start) else ""
        name = next((name for name in _GAIN_FIELDS if rest.startswith(name + "_")), None)
        if name is not None:
            gains[rest[len(name) + 1:]][{"gain_low": "low", "gain_high": "high", "gain": "gain"}[name]] = value
    for values in gains.values():
        values["decided"] = values["low"] > 0 or values["high"] < 0
    return dict(gains)


def flatten_top1_metrics(results: Mapping[str, Mapping[str, Mapping]], prefix: str) -> dict[str, float]:
    """Flat metrics `{prefix}_top1_{run}_{bucket}` (percent of captions; spaces in bucket names become `_`)."""
    return {f"{prefix}_top1_{run}_{bucket.replace(' ', '_')}": values["percent"]
            for run, buckets in results.items() for bucket, values in buckets.items()}


def unflatten_top1_metrics(metrics: Mapping[str, float], prefix: str, num_captions: int) -> dict[str, dict]:
    """The inverse of `flatten_top1_metrics`, with caption counts recovered from `num_captions`."""
    start, results = f"{prefix}_top1_", defaultdict(dict)
    for key, value in metrics.items():
        if key.startswith(start):
            run, _, bucket = key[len(start):].partition("_")
            results[run][bucket.replace("_", " ")] = {"percent": value,
                                                      "captions": round(value * num_captions / 100.0)}
    return dict(results)


__all__ = ["FAMILY_COLUMNS", "FamilyLabels", "caption_text_scores", "family_pairs", "family_win_rates",
           "family_gain_intervals", "format_family_table", "flatten_family_metrics", "unflatten_family_metrics",
           "unflatten_family_gains", "top1_breakdown",
           "format_top1_table", "flatten_top1_metrics", "unflatten_top1_metrics"]
