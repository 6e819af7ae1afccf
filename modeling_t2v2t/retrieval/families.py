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

The labels come from a dataset carrying the optional columns `FAMILY_COLUMNS` (the synthetic builder adds them to
its evaluation splits); `FamilyLabels.from_dataset` returns None for datasets without them.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    `{family: {"win_rate": %, "pairs": n, "captions": n}}` for each family with pairs, then `all`, from a
    (texts, videos) score matrix. `pairs` (from `family_pairs`) may be passed to score several matrices.
    """
    pairs = family_pairs(labels, text_to_video) if pairs is None else pairs
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    scores = scores.float().cpu()
    results, won_all, texts_all = {}, [], []
    for family in sorted(pairs, key=lambda name: (FAMILY_ORDER.index(name) if name in FAMILY_ORDER
                                                  else len(FAMILY_ORDER), name)):
        texts, siblings = pairs[family]
        own_scores, sibling_scores = scores[texts, text_to_video[texts]], scores[texts, siblings]
        won = (own_scores > sibling_scores).float() + 0.5 * (own_scores == sibling_scores).float()
        results[family] = _summary(won, texts)
        won_all.append(won)
        texts_all.append(texts)
    if won_all:
        results[ALL] = _summary(torch.cat(won_all), torch.cat(texts_all))
    return results


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


def _summary(won: torch.Tensor, texts: torch.Tensor) -> dict:
    return {"win_rate": 100.0 * float(won.mean()), "pairs": int(won.numel()), "captions": int(texts.unique().numel())}


def format_family_table(results: Mapping[str, Mapping[str, Mapping]], digits: int = 1) -> str:
    """
    Markdown table: one row per family, one win-rate column per run (e.g. `"embedding"`, `"reranked"`), then the
    number of pairs and captions (from the first run).
    """
    runs = list(results)
    families = list(dict.fromkeys(family for run in runs for family in results[run]))
    lines = ["| family | " + " | ".join(f"{run} win %" for run in runs) + " | pairs | captions |",
             "|---|" + "---:|" * (len(runs) + 2)]
    for family in families:
        cells = [f"{results[run][family]['win_rate']:.{digits}f}" if family in results[run] else "-" for run in runs]
        first = next(results[run][family] for run in runs if family in results[run])
        counts = [str(first.get(name, "-")) for name in ("pairs", "captions")]
        lines.append(f"| {family} | " + " | ".join(cells + counts) + " |")
    return "\n".join(lines)


def flatten_family_metrics(results: Mapping[str, Mapping[str, Mapping]], prefix: str) -> dict[str, float]:
    """Flat metrics for the Trainer's logs and JSON files: `{prefix}_family_{run}_{family}` (win rate, %) and
    `{prefix}_family_pairs_{family}` / `{prefix}_family_captions_{family}` (counts, the same for every run)."""
    flat = {}
    for run, families in results.items():
        for family, values in families.items():
            flat[f"{prefix}_family_{run}_{family}"] = values["win_rate"]
            flat[f"{prefix}_family_pairs_{family}"] = values["pairs"]
            flat[f"{prefix}_family_captions_{family}"] = values["captions"]
    return flat


def unflatten_family_metrics(metrics: Mapping[str, float], prefix: str) -> dict[str, dict[str, dict]]:
    """The inverse of `flatten_family_metrics`: `{run: {family: {"win_rate", "pairs", "captions"}}}`."""
    start, results, counts = f"{prefix}_family_", defaultdict(dict), defaultdict(dict)
    for key, value in metrics.items():
        if key.startswith(start):
            run, _, family = key[len(start):].partition("_")
            if run in ("pairs", "captions"):
                counts[family][run] = int(value)
            else:
                results[run][family] = {"win_rate": value}
    for families in results.values():
        for family, values in families.items():
            values.update(counts[family])
    return dict(results)


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
           "format_family_table", "flatten_family_metrics", "unflatten_family_metrics", "top1_breakdown",
           "format_top1_table", "flatten_top1_metrics", "unflatten_top1_metrics"]
