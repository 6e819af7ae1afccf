"""How much a model's outputs depend on frame order: every clip against the same clip played backwards.

A clip and its time-reversed copy show the same frames, so a model that ignores frame order gives both the same
video embedding and the same match score. The built-in benchmark's motion and order families are made of videos
whose differences are mostly temporal, and win rates on ~200 caption pairs are noisy (a few points); this check is
a direct, low-noise reading of whether the model uses frame order at all.

For each clip v of a split, with t(v) its first caption and w the next clip of its batch (a different video, for
scale):

- embedding change: `1 - cos(e(v), e(reversed v))` against `1 - cos(e(v), e(w))`;
- match-score change (models with a joint encoder): `|s(t(v), v) - s(t(v), reversed v)|` against
  `|s(t(v), v) - s(t(v), w)|`, where s is `score_pairs(...).scores`, the reranking score.

Each is reported as the mean over clips and as the ratio of the two means (0: blind to order; 1: reversing a clip
changes it as much as replacing it with another video).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .evaluation import encode_texts


@dataclass
class ReversalSensitivity:
    num_clips: int
    embedding_change_reversed: float
    embedding_change_other: float
    score_change_reversed: float | None = None
    score_change_other: float | None = None

    @property
    def embedding_ratio(self) -> float:
        return _ratio(self.embedding_change_reversed, self.embedding_change_other)

    @property
    def score_ratio(self) -> float | None:
        if self.score_change_reversed is None:
            return None
        return _ratio(self.score_change_reversed, self.score_change_other)

    def to_dict(self) -> dict:
        return {**asdict(self), "embedding_ratio": self.embedding_ratio, "score_ratio": self.score_ratio}

    def format(self) -> str:
        lines = [f"Frame-order sensitivity over {self.num_clips} clips (each against itself played backwards; "
                 "0 = blind to order, 1 = as different as another video):",
                 f"  video embedding, 1 - cos: reversed {self.embedding_change_reversed:.4g}, other video "
                 f"{self.embedding_change_other:.4g}, ratio {self.embedding_ratio:.3f}"]
        if self.score_change_reversed is not None:
            lines.append(f"  match score of its caption, |change|: reversed {self.score_change_reversed:.4g}, other "
                         f"video {self.score_change_other:.4g}, ratio {self.score_ratio:.3f}")
        return "\n".join(lines)


def _ratio(reversed_change: float, other_change: float) -> float:
    # NaN when the other videos do not differ either (e.g. a gallery of one repeated clip): no scale to compare to.
    return reversed_change / other_change if other_change > 0 else float("nan")


def _first_caption_of_each_video(text_to_video: torch.Tensor, num_videos: int) -> torch.Tensor:
    first = torch.full((num_videos,), -1, dtype=torch.long)
    for text in range(len(text_to_video) - 1, -1, -1):  # backwards, so the first caption is written last
        first[int(text_to_video[text])] = text
    missing = (first < 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"Videos {missing[:10]} have no caption; the frame-order check needs one per video.")
    return first


@torch.no_grad()
def reversal_sensitivity(model, caption_batches, video_batches, text_to_video: torch.Tensor, num_videos: int,
                         device=None, progress: bool = True) -> ReversalSensitivity:
    """
    The frame-order check above for a model with `encode_text` / `encode_video` (T2V2T in every fusion mode; the
    match scores only with a joint encoder), on `retrieval_loaders`' caption and video loaders. The "other video"
    of a clip is the next clip of its loader batch (the first for the last), so batches need at least two clips.
    """
    if not (hasattr(model, "encode_video") and hasattr(model, "encode_text")):
        raise ValueError(f"The frame-order check needs a model with encode_text/encode_video (T2V2TModel); "
                         f"{type(model).__name__} has none.")
    was_training = model.training
    model.eval()  # dropout would change the embeddings by itself
    try:
        return _reversal_sensitivity(model, caption_batches, video_batches, text_to_video, num_videos,
                                     device or next(model.parameters()).device, progress)
    finally:
        model.train(was_training)


def _reversal_sensitivity(model, caption_batches, video_batches, text_to_video, num_videos, device,
                          progress) -> ReversalSensitivity:
    joint = getattr(model.config, "has_joint_encoder", False)
    first_caption = _first_caption_of_each_video(text_to_video, num_videos)

    texts = None
    if joint:
        # Batches padded to different lengths come back padded to one length.
        texts = encode_texts(model, caption_batches, device, progress).select(first_caption.to(device))

    changes = {"embedding_reversed": [], "embedding_other": [], "score_reversed": [], "score_other": []}
    start = 0
    for batch in tqdm(video_batches, desc="Encoding clips forwards and backwards", disable=not progress):
        pixels = (batch["pixel_values_videos"] if isinstance(batch, dict) else batch).to(device)
        size = pixels.shape[0]
        if size < 2:
            raise ValueError(f"The frame-order check compares each clip with the next one of its batch; the batch "
                             f"of clips {start}..{start + size - 1} has {size}. Use another batch size.")
        forwards, backwards = model.encode_video(pixels), model.encode_video(pixels.flip(1))
        following = torch.arange(1, size + 1, device=device) % size
        video = F.normalize(forwards.video_embeds.float(), dim=-1)
        changes["embedding_reversed"].append(1 - (video * F.normalize(backwards.video_embeds.float(), dim=-1)).sum(-1))
        changes["embedding_other"].append(1 - (video * video[following]).sum(-1))
        if joint:
            captions = texts.select(torch.arange(start, start + size, device=device))
            own = model.score_pairs(text_encoding=captions, video_encoding=forwards).scores.float()
            reversed_ = model.score_pairs(text_encoding=captions, video_encoding=backwards).scores.float()
            other = model.score_pairs(text_encoding=captions, video_encoding=forwards.select(following)).scores.float()
            changes["score_reversed"].append((own - reversed_).abs())
            changes["score_other"].append((own - other).abs())
        start += size
    if start != num_videos:
        raise ValueError(f"The video loader gave {start} clips; text_to_video and num_videos say {num_videos}.")

    mean = {key: float(torch.cat(values).mean()) if values else None for key, values in changes.items()}
    return ReversalSensitivity(num_clips=num_videos, embedding_change_reversed=mean["embedding_reversed"],
                               embedding_change_other=mean["embedding_other"],
                               score_change_reversed=mean["score_reversed"], score_change_other=mean["score_other"])


__all__ = ["ReversalSensitivity", "reversal_sensitivity"]
