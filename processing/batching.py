"""From schema datasets to model batches.

- `caption_pairs` turns one-row-per-video datasets into one row per (caption, video) pair, keeping an integer
  `video_index` so captions of the same video are positives of one another in VTC.
- `VideoTextCollator` decodes clips lazily, inside DataLoader workers (the collate function runs there), cleans
  and tokenises captions, and returns `input_ids`, `attention_mask`, `pixel_values_videos`, `video_ids` (and
  `return_loss=True` for the plain `Trainer`). Decoding in the collator, not in `with_transform`, lets a bad video
  be dropped from its batch with a count and a log line when `skip_bad=True`.
"""

import logging

import datasets
import numpy as np
import torch

from .decoding import VideoDecodeError, decode_clip
from .frame_cache import DecodedVideoCache
from .text_cleaning import clean_caption

logger = logging.getLogger(__name__)

# Batch key holding how many clips the collator dropped from this batch (with `skip_bad=True`). The count travels
# with the batch because the collator runs in DataLoader worker processes, whose counters the trainer never sees;
# `training.retrieval_trainer.RetrievalTrainer` pops it before the model and sums it over processes.
SKIPPED_KEY = "num_skipped"


def caption_pairs(dataset: datasets.Dataset) -> datasets.Dataset:
    """One row per caption: `video`, `caption`, `video_id`, `video_index` (row of the video), `media_type`."""

    def explode(batch, indices):
        out = {"video": [], "caption": [], "video_id": [], "video_index": [], "media_type": []}
        for position, index in enumerate(indices):
            for caption in batch["captions"][position]:
                out["video"].append(batch["video"][position])
                out["caption"].append(caption)
                out["video_id"].append(batch["video_id"][position])
                out["video_index"].append(index)
                out["media_type"].append(batch["media_type"][position])
        return out

    return dataset.map(explode, batched=True, with_indices=True, remove_columns=dataset.column_names,
                       desc="Caption pairs")


def labelled_negative_mask(video_indices: list[int], labelled_negatives: dict[int, set[int]]) -> torch.Tensor:
    """(B, B) bool: True at (i, j) when video `video_indices[j]` is a labelled hard negative of video
    `video_indices[i]`'s captions."""
    return torch.tensor([[other in labelled_negatives.get(index, ()) for other in video_indices]
                         for index in video_indices], dtype=torch.bool)


class VideoTextCollator:
    """
    Collate function for (caption, video) rows from `caption_pairs`.

    Args:
        processor: a `T2V2TProcessor` (tokenizer + video processor; its frame sampling is bypassed because the
            clip is already sampled here).
        num_frames: frames per clip; defaults to the video processor's `num_frames`.
        train: random frame per segment (training) or the middle one (evaluation).
        backend: decoding backend name (see `processing.decoding.decode_clip`).
        skip_bad: drop a clip that fails to decode (`VideoDecodeError` or a missing file) from its batch instead
            of raising: it is logged, counted in `num_skipped` (this process) and in the batch's `"num_skipped"`
            tensor, which `RetrievalTrainer` totals over workers and processes. A batch in which every clip fails
            holds only that count (the trainer then skips the step). Without `skip_bad` the first bad file raises
            `VideoDecodeError` naming it.
        max_words: cap captions at this many words before tokenising (VindLU's `max_l`).
        return_loss: add `return_loss=True`, so `Trainer` gets a loss from the model.
        cache_bytes: keep whole decoded videos in memory up to this many bytes per process
            (`processing.frame_cache.DecodedVideoCache`): a small dataset seen for many epochs is decoded once;
            0 = decode the sampled frames of every clip every time.
        labelled_negatives: optional `{video_index: video indices}`: videos that the data names as hard negatives
            of each video's captions (e.g. `processing.builders.synthetic.synthetic_twins`). Training batches then
            carry `labelled_negatives`, a (B, B) bool tensor, True at (i, j) when pair j's video is one of pair
            i's; T2V2T's VTM draws from them (`T2V2TConfig.vtm_labelled_negative_prob`).
        contrast_captions: optional `{video_index: {caption: contrast captions}}`: rewrites of a caption that are
            false of its video (e.g. `processing.builders.synthetic.synthetic_contrast_captions`), or a list of
            such maps (e.g. one per factor). Training batches then carry one contrast, drawn at random from each
            map, for each pair that has one there: `contrast_input_ids` and
            `contrast_attention_mask` (M, N), tokenised with the captions (same N), and `contrast_pair_index` (M,),
            the pair each belongs to; T2V2T uses them as hard negative texts of that pair's video
            (`T2V2TConfig.vtm_contrast_captions`, `vtc_contrast_captions`).

    Images (`media_type="image"`) are 1-frame clips; a batch must not mix images and videos (group them).
    """

    def __init__(self, processor, num_frames: int | None = None, train: bool = True, backend: str = "pyav",
                 skip_bad: bool = False, max_words: int | None = None, return_loss: bool = True,
                 cache_bytes: int = 0, labelled_negatives: dict[int, set[int]] | None = None,
                 contrast_captions: dict[int, dict[str, list[str]]] | list[dict[int, dict[str, list[str]]]]
                 | None = None):
        self.processor = processor
        self.num_frames = num_frames or processor.video_processor.num_frames
        self.train = train
        self.backend = backend
        self.skip_bad = skip_bad
        self.max_words = max_words
        self.return_loss = return_loss
        self.num_skipped = 0
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes}.")
        self.cache_bytes = cache_bytes
        self.labelled_negatives = labelled_negatives
        self.contrast_captions = contrast_captions
        self._contrast_groups = [contrast_captions] if isinstance(contrast_captions, dict) else contrast_captions
        self.num_contrasts_cut = 0
        self._rng = None  # created on first use, in the process (DataLoader worker) that decodes
        self._cache = None  # likewise: each decoding process keeps its own

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            # torch seeds each DataLoader worker differently every epoch; follow it so runs are reproducible.
            self._rng = np.random.default_rng(torch.initial_seed() % 2**63)
        return self._rng

    def _decode(self, row: dict, num_frames: int):
        mode, rng = ("random", self._generator()) if self.train else ("middle", None)
        try:
            if self.cache_bytes:
                if self._cache is None:
                    self._cache = DecodedVideoCache(self.cache_bytes, backend=self.backend)
                return self._cache.clip(row["video"], num_frames, mode=mode, rng=rng)
            return decode_clip(row["video"], num_frames, mode=mode, backend=self.backend, rng=rng)
        except (VideoDecodeError, FileNotFoundError) as error:
            if not self.skip_bad:
                raise
            self.num_skipped += 1
            logger.warning("Skipped %s: %s (%d skipped so far in this process)", row["video"], error,
                           self.num_skipped)
            return None

    def __call__(self, rows: list[dict]) -> dict:
        media = {row.get("media_type", "video") for row in rows}
        if len(media) > 1:
            raise ValueError("A batch mixes images and videos; batch them separately (group rows by media_type).")
        num_frames = 1 if media == {"image"} else self.num_frames
        kept, clips = [], []
        for row in rows:
            clip = self._decode(row, num_frames)
            if clip is not None:
                kept.append(row)
                clips.append(clip)
        skipped = {SKIPPED_KEY: torch.tensor(len(rows) - len(kept))} if self.skip_bad else {}
        if not kept:  # only with skip_bad: every failure raised otherwise
            logger.warning("Every clip of this batch failed to decode (%s); the batch is empty.",
                           ", ".join(str(row["video"]) for row in rows))
            return skipped
        captions = [clean_caption(row["caption"], self.max_words) for row in kept]
        for row, caption in zip(kept, captions):
            if not caption:
                raise ValueError(f"The caption of {row['video']} is empty after cleaning: {row['caption']!r}")
        contrasts, contrast_pairs = self._draw_contrasts(kept, captions)
        # Pad to the longest caption of the batch, not to max_length: padded positions are masked out, so the result
        # is the same and the text and fusion layers do less work (synthetic captions are ~12 of 32 tokens).
        batch = dict(self.processor(text=captions + contrasts, videos=clips, do_sample_frames=False,
                                    padding="longest"))
        if self.contrast_captions is not None:
            for key in ("input_ids", "attention_mask"):
                batch[f"contrast_{key}"] = batch[key][len(captions):]
                batch[key] = batch[key][:len(captions)]
            batch["contrast_pair_index"] = torch.tensor(contrast_pairs, dtype=torch.long)
        batch["video_ids"] = torch.tensor([row["video_index"] for row in kept], dtype=torch.long)
        if self.labelled_negatives is not None:
            batch["labelled_negatives"] = labelled_negative_mask(batch["video_ids"].tolist(), self.labelled_negatives)
        if self.return_loss:
            batch["return_loss"] = True
        return {**batch, **skipped}

    def _draw_contrasts(self, rows: list[dict], captions: list[str]) -> tuple[list[str], list[int]]:
        """One contrast caption (cleaned like the captions) from each contrast map per pair that has one there, and
        the index of its pair."""
        if self.contrast_captions is None:
            return [], []
        contrasts, pairs = [], []
        for position, (row, caption) in enumerate(zip(rows, captions)):
            for group in self._contrast_groups:
                choices = group.get(row["video_index"], {}).get(row["caption"], [])
                if not choices:
                    continue
                contrast = clean_caption(choices[int(self._generator().integers(len(choices)))], self.max_words)
                if contrast == caption:  # max_words cut off the words that differed: no contrast left
                    self.num_contrasts_cut += 1
                    if self.num_contrasts_cut == 1:
                        logger.warning("A contrast caption of %s equals its caption after cleaning to max_words=%s "
                                       "(%r); such pairs get no contrast (counted in num_contrasts_cut).",
                                       row["video"], self.max_words, caption)
                    continue
                contrasts.append(contrast)
                pairs.append(position)
        return contrasts, pairs


class EpochBatchSampler(torch.utils.data.Sampler):
    """Base of the batch samplers here: `batch_size`, a `seed` to which the epoch (`set_epoch`, called by the
    Trainer/accelerate each epoch) is added, and `drop_last` for the last, incomplete batch."""

    def __init__(self, batch_size: int, seed: int = 0, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}.batch_size={batch_size} must be >= 1.")
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def _cut(self, order: list[int]) -> list[list[int]]:
        """`order` cut into batches of `batch_size` (the last one dropped if incomplete and `drop_last`)."""
        batches = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        return [batch for batch in batches if len(batch) == self.batch_size or not self.drop_last]

    def _num_batches(self, count: int) -> int:
        full, rest = divmod(count, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class MediaTypeBatchSampler(EpochBatchSampler):
    """
    Batches that each hold one media type (images are 1-frame clips, videos have T frames, so they cannot share a
    tensor), shuffled within each type and interleaved in a random order every epoch, as VindLU alternates image
    and video batches in pretraining. Under `accelerate`, whole batches are sharded across processes.
    """

    def __init__(self, media_types: list[str], batch_size: int, seed: int = 0, drop_last: bool = False):
        super().__init__(batch_size, seed, drop_last)
        self.groups = {}
        for index, media in enumerate(media_types):
            self.groups.setdefault(media, []).append(index)

    def _batches(self) -> list[list[int]]:
        generator = self._generator()
        batches = []
        for media in sorted(self.groups):
            indices = self.groups[media]
            batches += self._cut([indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()])
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self):
        yield from self._batches()

    def __len__(self) -> int:
        return sum(self._num_batches(len(group)) for group in self.groups.values())


class CaptionCollator:
    """Cleans and tokenises caption rows (`{"caption": str}`) into `input_ids`/`attention_mask`."""

    def __init__(self, processor, max_words: int | None = None):
        self.processor = processor
        self.max_words = max_words

    def __call__(self, rows: list[dict]) -> dict:
        captions = [clean_caption(row["caption"], self.max_words) for row in rows]
        return dict(self.processor(text=captions, padding="longest"))  # as in training: masked padding is free


class GalleryVideoCollator:
    """Decodes evaluation clips (middle frame of each segment). Strict: a gallery video cannot be dropped without
    shifting every later video's index, so a decoding error names the file and stops the evaluation."""

    def __init__(self, processor, num_frames: int | None = None, backend: str = "pyav"):
        self.processor = processor
        self.num_frames = num_frames or processor.video_processor.num_frames
        self.backend = backend

    def __call__(self, rows: list[dict]) -> dict:
        clips = [decode_clip(row["video"], 1 if row.get("media_type") == "image" else self.num_frames,
                             mode="middle", backend=self.backend) for row in rows]
        return dict(self.processor(videos=clips, do_sample_frames=False))


def retrieval_loaders(dataset: datasets.Dataset, processor, batch_size: int = 16, num_workers: int = 0,
                      num_frames: int | None = None, backend: str = "pyav", max_words: int | None = None):
    """
    DataLoaders for two-stage retrieval evaluation of a schema dataset: every caption (in order) and every video.
    Returns `(caption_loader, video_loader, text_to_video, num_videos)`.
    """
    pairs = caption_pairs(dataset)
    caption_loader = torch.utils.data.DataLoader(
        pairs.select_columns(["caption"]), batch_size=batch_size,
        collate_fn=CaptionCollator(processor, max_words), num_workers=num_workers)
    video_loader = torch.utils.data.DataLoader(
        dataset.select_columns(["video", "media_type"]), batch_size=batch_size,
        collate_fn=GalleryVideoCollator(processor, num_frames, backend), num_workers=num_workers)
    return caption_loader, video_loader, torch.tensor(list(pairs["video_index"])), len(dataset)


__all__ = ["SKIPPED_KEY", "caption_pairs", "VideoTextCollator", "labelled_negative_mask", "MediaTypeBatchSampler", "CaptionCollator", "GalleryVideoCollator", "retrieval_loaders"]
