"""Training batches that hold whole groups of hard negatives (e.g. the synthetic benchmark's families: videos that
differ only in one object's colour, shape or size, one motion, or the order of two events).

A random batch of 64 pairs from 1,000 videos rarely holds a video's sibling, so neither the contrastive loss nor
VTM's hard-negative mining ever has to tell siblings apart. Here every batch is made of whole groups, one caption
per video, so that the siblings of each video are its in-batch negatives.
"""

import torch

from .batching import EpochBatchSampler


class GroupBatchSampler(EpochBatchSampler):
    """
    Batches of caption-pair indices in which the videos of a group sit together.

    Each epoch, every video's captions are shuffled and dealt into rounds (round r holds each video's r-th caption);
    within a round the groups are shuffled and emitted whole; the resulting stream is cut into batches of
    `batch_size`. Only the groups cut by a batch boundary are split. Every pair is used once per epoch, as with a
    plain shuffle.

    Args:
        video_index: per pair, the row of its video (`caption_pairs`' `video_index`).
        group_of_video: per video row, its group id (any hashable); videos without siblings form their own group.
        batch_size: pairs per batch.
        seed: base seed; the epoch (`set_epoch`) is added to it.
        drop_last: drop the last, incomplete batch.
    """

    def __init__(self, video_index: list[int], group_of_video: list, batch_size: int, seed: int = 0,
                 drop_last: bool = False):
        super().__init__(batch_size, seed, drop_last)
        self.pairs_of_video = {}
        for pair, video in enumerate(video_index):
            self.pairs_of_video.setdefault(video, []).append(pair)
        self.num_pairs = len(video_index)
        self.set_groups(group_of_video)

    def set_groups(self, group_of_video: list) -> None:
        """Replace the groups (e.g. nearest neighbours recomputed by the current model); the next epoch uses them."""
        for video in self.pairs_of_video:
            if not 0 <= video < len(group_of_video):
                raise ValueError(f"GroupBatchSampler: a pair has video_index={video}, outside the "
                                 f"{len(group_of_video)} videos that have a group.")
        self.videos_of_group = {}
        for video in sorted(self.pairs_of_video):
            self.videos_of_group.setdefault(group_of_video[video], []).append(video)

    def _order(self) -> list[int]:
        generator = self._generator()
        dealt = {video: [pairs[i] for i in torch.randperm(len(pairs), generator=generator).tolist()]
                 for video, pairs in self.pairs_of_video.items()}
        groups = list(self.videos_of_group.values())
        order = []
        for round_ in range(max(len(pairs) for pairs in dealt.values())):
            for g in torch.randperm(len(groups), generator=generator).tolist():
                order.extend(dealt[video][round_] for video in groups[g] if round_ < len(dealt[video]))
        return order

    def __iter__(self):
        yield from self._cut(self._order())

    def __len__(self) -> int:
        return self._num_batches(self.num_pairs)


__all__ = ["GroupBatchSampler"]
