"""Every query's rank from one evaluation, as a JSON-ready record, so that runs scored on the same queries can be
compared query by query (paired statistics across methods and seeds: `paired_bootstrap`).

A record holds, per stage (`"embedding"`, and `"reranked"` for models with a joint encoder), the text→video rank of
every caption (evaluation order) and the video→text rank of every video (gallery order), 1-based and the expected
rank under random tie-breaking (`metrics.ranks_text_to_video`, `metrics.ranks_video_to_text`); and a hash of the
caption order (each caption's video id and text) that tells whether two records ranked the same queries.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np

RECORD_STAGES = ("embedding", "reranked")
DIRECTIONS = ("t2v", "v2t")


def caption_order(dataset) -> tuple[list[str], list[str]] | None:
    """(video id of each caption, caption text) in evaluation order (rows, then each row's captions: the order of
    `processing.batching.caption_pairs`) for a schema dataset; None when it lacks `video_id` or `captions`."""
    if not all(column in getattr(dataset, "column_names", ()) for column in ("video_id", "captions")):
        return None
    video_ids, captions = [], []
    for video_id, texts in zip(dataset["video_id"], dataset["captions"]):
        video_ids.extend([str(video_id)] * len(texts))
        captions.extend(str(text) for text in texts)
    return video_ids, captions


def caption_order_hash(text_to_video: Sequence[int], caption_video_ids: Sequence[str] | None = None,
                       captions: Sequence[str] | None = None) -> str:
    """sha256 of the queries' identity in order: (video id, caption) per caption when known, else each caption's
    video index (which only pins down the gallery's shape)."""
    if caption_video_ids is not None and captions is not None:
        identity = [[str(video_id), str(text)] for video_id, text in zip(caption_video_ids, captions, strict=True)]
    else:
        identity = [int(index) for index in np.asarray(text_to_video).tolist()]
    return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()


def _json_ranks(ranks: np.ndarray) -> list[float | int | None]:
    # Whole ranks as ints (the usual case: no ties) keep the file short; NaN (a video without a caption) is None.
    return [None if np.isnan(rank) else int(rank) if float(rank).is_integer() else float(rank)
            for rank in np.asarray(ranks, dtype=np.float64)]


def ranks_record(ranks: Mapping[str, Mapping[str, np.ndarray]], text_to_video, num_videos: int,
                 dataset=None, v2t_convention: str = "best_caption") -> dict:
    """
    JSON-ready record of `TwoStageResult.ranks` (`{stage: {"t2v": (texts,), "v2t": (videos,)}}`).

    Args:
        text_to_video: (texts,) each caption's video index, as evaluated.
        num_videos: gallery size.
        dataset: the evaluated schema dataset, for the captions' video ids and texts (hash and ids); optional.
        v2t_convention: the video→text convention the ranks were computed with.
    """
    text_to_video = np.asarray(text_to_video)
    order = caption_order(dataset) if dataset is not None else None
    if order is not None and len(order[0]) != len(text_to_video):
        raise ValueError(f"The dataset has {len(order[0])} captions but text_to_video {len(text_to_video)}.")
    record = {"num_videos": int(num_videos), "num_captions": int(len(text_to_video)),
              "v2t_convention": v2t_convention,
              "caption_order_sha256": caption_order_hash(text_to_video, *(order or (None, None)))}
    if order is not None:
        record["caption_video_ids"] = order[0]
    record["ranks"] = {stage: {direction: _json_ranks(ranks[stage][direction]) for direction in DIRECTIONS}
                       for stage in RECORD_STAGES if stage in ranks}
    return record


def record_ranks(record: Mapping, stage: str, direction: str) -> np.ndarray:
    """One stage and direction of a record as a float array (NaN where a query has no rank)."""
    if stage not in record["ranks"]:
        raise KeyError(f"The record has no {stage!r} ranks (it has {sorted(record['ranks'])}).")
    return np.array([np.nan if rank is None else rank for rank in record["ranks"][stage][direction]],
                    dtype=np.float64)


__all__ = ["caption_order", "caption_order_hash", "ranks_record", "record_ranks"]
