"""`batch_groups="neighbours"`: a `TrainerCallback` that regroups the training videos into nearest-neighbour groups
by the current model's caption embeddings, before the first epoch and every `refresh_epochs` epochs after, so that
`GroupBatchSampler` puts each video's look-alikes in its batch (`processing.neighbour_batching`)."""

import logging
import math
import time

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from processing.batching import CaptionCollator
from processing.group_batching import GroupBatchSampler
from processing.neighbour_batching import group_summary, mean_embedding_per_video, nearest_neighbour_groups

logger = logging.getLogger(__name__)


@torch.no_grad()
def caption_embeddings(model, processor, captions: list[str], batch_size: int = 256, max_words: int | None = None,
                       progress: bool = True) -> torch.Tensor:
    """(N, E) `model.get_text_features` of `captions`, in eval mode (the mode the caller had is restored)."""
    was_training = model.training
    model.eval()
    collate = CaptionCollator(processor, max_words)
    device = next(model.parameters()).device
    embeddings = []
    try:
        for start in tqdm(range(0, len(captions), batch_size), desc="Embedding captions for neighbour groups",
                          disable=not progress):
            batch = collate([{"caption": caption} for caption in captions[start:start + batch_size]])
            batch = {key: value.to(device) for key, value in batch.items()}
            embeddings.append(model.get_text_features(**batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(embeddings)


class NeighbourRegroupCallback(TrainerCallback):
    """
    Args:
        sampler: the training `GroupBatchSampler` (its groups are replaced).
        processor: tokenises the captions.
        captions / video_index: the training pairs' captions and video rows (`caption_pairs`).
        group_size: videos per group.
        refresh_epochs: regroup every this many epochs; 0 = once, before the first epoch.
        seed: base seed of the anchors' order; the epoch is added.
        labels: optional per video row (e.g. the synthetic families), only to log how often group members share
            one; the grouping never reads them.
        max_words: caption cap, as in training (`clean_caption`).
        progress: show a progress bar while the captions are embedded.
    """

    def __init__(self, sampler: GroupBatchSampler, processor, captions: list[str], video_index: list[int],
                 group_size: int, refresh_epochs: int = 1, seed: int = 0, max_words: int | None = None,
                 labels: list | None = None, progress: bool = True):
        if refresh_epochs < 0:
            raise ValueError(f"NeighbourRegroupCallback: refresh_epochs={refresh_epochs} must be >= 0 (0 = once).")
        self.sampler, self.processor = sampler, processor
        self.captions, self.video_index = captions, video_index
        self.group_size, self.refresh_epochs, self.seed = group_size, refresh_epochs, seed
        self.max_words, self.labels, self.progress = max_words, labels, progress
        self.regroupings = 0

    def regroup(self, model, epoch: int) -> None:
        started = time.perf_counter()
        per_video = mean_embedding_per_video(
            caption_embeddings(model, self.processor, self.captions, max_words=self.max_words,
                               progress=self.progress), self.video_index)
        videos = sorted(per_video)
        embeddings = torch.stack([per_video[video] for video in videos])
        groups = nearest_neighbour_groups(embeddings, self.group_size, seed=self.seed + epoch)
        group_of_video = [-1] * (max(videos) + 1)
        for video, group in zip(videos, groups):
            group_of_video[video] = group
        self.sampler.set_groups(group_of_video)
        self.regroupings += 1
        labels = None if self.labels is None else [self.labels[video] for video in videos]
        summary = group_summary(groups, embeddings, labels)
        logger.info("Neighbour groups for epoch %d (%.1f s): %d groups of %.2f videos on average, mean caption "
                    "cosine within a group %.3f%s.", epoch, time.perf_counter() - started, summary["groups"],
                    summary["mean_group_size"], summary["mean_member_cosine"],
                    "" if labels is None else f", {100 * summary['same_label_pairs']:.1f}% of member pairs share a "
                                              "label")

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        # The Trainer calls this before it starts the epoch's batches, so the sampler deals the new groups. The
        # epoch comes from the state, so a run resumed mid-epoch regroups (from the resumed model) on schedule.
        epoch = math.floor(state.epoch + 1e-6)
        due = self.regroupings == 0 or (self.refresh_epochs and epoch % self.refresh_epochs == 0)
        if due:
            self.regroup(model, epoch)


__all__ = ["NeighbourRegroupCallback", "caption_embeddings"]
