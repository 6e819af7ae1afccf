"""Groups of nearest neighbours for hard-negative training batches on any data (`batch_groups="neighbours"`).

Family batches (`processing.group_batching`) need labelled families, which only the synthetic benchmark has. Here
the groups come from the model itself: each training video is represented by the mean of its captions' text
embeddings, and videos whose captions the model finds alike are dealt into the same group, so the same
`GroupBatchSampler` puts them in one batch, where the contrastive loss and VTM must tell them apart. This is
topic-aware sampling (Hofstätter et al., SIGIR 2021, TAS-B: batches from clusters of query embeddings) with small
groups of nearest neighbours instead of large k-means clusters, so one batch still spans many topics.

Why captions and not the videos: a caption embedding costs one pass of the text tower, a video embedding a decode
of every training clip; and with a pretrained text tower the caption neighbours are meaningful from the first step,
while a from-scratch video tower's are not.
"""

import logging

import torch

from modeling_t2v2t.retrieval.index import build_index

logger = logging.getLogger(__name__)


def mean_embedding_per_video(caption_embeddings: torch.Tensor, video_index: list[int]) -> dict[int, torch.Tensor]:
    """Per video row that has captions, the L2-normalised mean of its captions' embeddings (`caption_embeddings`
    row `i` belongs to video `video_index[i]`). Returns `{video_row: (E,) tensor}`."""
    if len(caption_embeddings) != len(video_index):
        raise ValueError(f"mean_embedding_per_video: {len(caption_embeddings)} caption embeddings for "
                         f"{len(video_index)} video indices.")
    videos = sorted(set(video_index))
    row_of = {video: row for row, video in enumerate(videos)}
    rows = torch.tensor([row_of[video] for video in video_index], dtype=torch.long)
    sums = torch.zeros(len(videos), caption_embeddings.shape[1], dtype=torch.float32)
    sums.index_add_(0, rows, caption_embeddings.float())
    means = torch.nn.functional.normalize(sums, dim=-1)
    return {video: means[row] for video, row in row_of.items()}


def nearest_neighbour_groups(embeddings: torch.Tensor, group_size: int, seed: int = 0,
                             num_candidates: int | None = None, backend: str = "exact") -> list[int]:
    """
    Deal the rows of `embeddings` (N, E) into groups of `group_size` near neighbours; returns a group id per row.

    Anchors are visited in a random order (`seed`); each anchor not yet grouped takes its nearest rows not yet
    grouped among its `num_candidates` (default `4 * group_size`) nearest by inner product, searched with
    `modeling_t2v2t.retrieval.index` (`backend` "exact", or "faiss" for large N). Late anchors whose candidates are
    all taken form smaller groups, down to one row; `GroupBatchSampler` fills batches with whole groups regardless.
    """
    if group_size < 1:
        raise ValueError(f"nearest_neighbour_groups: group_size={group_size} must be >= 1.")
    count = len(embeddings)
    if count == 0:
        return []
    num_candidates = min(count, num_candidates or 4 * group_size)
    if num_candidates < min(count, group_size):
        raise ValueError(f"nearest_neighbour_groups: num_candidates={num_candidates} is below group_size="
                         f"{group_size}; no group could be filled.")
    _, neighbours = build_index(embeddings, backend=backend).search(embeddings, num_candidates)
    neighbours = neighbours.tolist()
    group_of = [-1] * count
    next_group = 0
    for anchor in torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist():
        if group_of[anchor] >= 0:
            continue
        members = [anchor]
        for candidate in neighbours[anchor]:
            if len(members) == group_size:
                break
            if candidate >= 0 and candidate != anchor and group_of[candidate] < 0:
                members.append(candidate)
        for member in members:
            group_of[member] = next_group
        next_group += 1
    return group_of


def group_summary(group_of: list[int], embeddings: torch.Tensor, labels: list | None = None) -> dict[str, float]:
    """What a grouping looks like, for the log: groups, their mean size, the mean cosine between members of a
    group, and (given `labels`, e.g. the synthetic benchmark's families) the share of member pairs with one label."""
    members = {}
    for row, group in enumerate(group_of):
        members.setdefault(group, []).append(row)
    cosines, same_label, pairs = 0.0, 0, 0
    for rows in members.values():
        if len(rows) < 2:
            continue
        block = embeddings[rows] @ embeddings[rows].T
        count = len(rows) * (len(rows) - 1)
        cosines += float(block.sum() - block.diagonal().sum())
        pairs += count
        if labels is not None:
            same_label += sum(labels[a] == labels[b] for a in rows for b in rows if a != b)
    summary = {"groups": len(members), "mean_group_size": len(group_of) / max(len(members), 1),
               "mean_member_cosine": cosines / pairs if pairs else float("nan")}
    if labels is not None:
        summary["same_label_pairs"] = same_label / pairs if pairs else float("nan")
    return summary


__all__ = ["mean_embedding_per_video", "nearest_neighbour_groups", "group_summary"]
