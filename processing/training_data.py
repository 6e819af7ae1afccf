"""Data arguments of the training scripts and the datasets, collator and loaders they turn into.

A dataset is named by a JSON object: `{"builder": <name in processing.builders.BUILDERS>, ...builder kwargs}`,
e.g. `{"builder": "msrvtt", "split": "train_9k", "annotation_dir": "msrvtt_data", "video_root": "videos"}` or
`{"builder": "synthetic", "split": "train", "num_videos": 2000}`. Training takes a list of them (pretraining mixes
video and image corpora); validation and test take one each.
"""

import functools
from dataclasses import dataclass, field

import datasets

from modeling_t2v2t.training_setup import parse_json_argument

from .batching import MediaTypeBatchSampler, VideoTextCollator, caption_pairs, retrieval_loaders
from .builders import BUILDERS, build


def _check_spec(spec, name: str) -> dict:
    if not isinstance(spec, dict) or spec.get("builder") not in BUILDERS:
        raise ValueError(f"--{name}: each dataset is a JSON object with a 'builder' among {sorted(BUILDERS)}, "
                         f"got {spec!r}.")
    return spec


@dataclass
class DataArguments:
    train_data: str = field(default='[{"builder": "synthetic", "split": "train"}]', metadata={
        "help": "JSON list of training datasets, each {\"builder\": name, ...builder arguments}."})
    validation_data: str | None = field(default='{"builder": "synthetic", "split": "val"}', metadata={
        "help": "JSON dataset for validation (checkpoint selection); null for none."})
    test_data: str | None = field(default=None, metadata={
        "help": "JSON dataset evaluated once after training (reported, never used for selection)."})
    eval_num_frames: int | None = field(default=None, metadata={"help": "Frames per clip at evaluation."})
    max_words: int | None = field(default=None, metadata={"help": "Cap captions at this many words (VindLU max_l)."})
    decode_backend: str = field(default="pyav", metadata={"help": "pyav, torchcodec or decord."})
    skip_bad: bool = field(default=False, metadata={"help": "Count, log and skip undecodable training clips."})
    decoded_cache_mb: int = field(default=0, metadata={
        "help": "Keep whole decoded training videos in memory, up to this many MB per data-loading process, so a "
                "small dataset seen for many epochs is decoded once (short videos only); 0 = off."})
    k_test: int = field(default=128, metadata={"help": "Candidates reranked per query at evaluation; 0 = none."})

    def __post_init__(self):
        train = parse_json_argument(self.train_data, "train_data", (dict, list))
        self.train_data = [_check_spec(spec, "train_data") for spec in (train if isinstance(train, list) else [train])]
        self.validation_data = parse_json_argument(self.validation_data, "validation_data")
        self.test_data = parse_json_argument(self.test_data, "test_data")
        for name in ("validation_data", "test_data"):
            if getattr(self, name) is not None:
                _check_spec(getattr(self, name), name)
        if self.decoded_cache_mb < 0:
            raise ValueError(f"--decoded_cache_mb must be >= 0 (0 = off), got {self.decoded_cache_mb}.")


def build_split(spec: dict | None) -> datasets.Dataset | None:
    if spec is None:
        return None
    kwargs = {key: value for key, value in spec.items() if key != "builder"}
    return build(spec["builder"], **kwargs)[0]


def build_training_data(args: DataArguments) -> tuple[datasets.Dataset, datasets.Dataset | None, datasets.Dataset | None]:
    """(training caption pairs, validation gallery, test gallery). Training corpora are concatenated before
    pairing, so `video_index` stays unique across them."""
    corpora = [build_split(spec) for spec in args.train_data]
    train = corpora[0] if len(corpora) == 1 else datasets.concatenate_datasets(corpora)
    return caption_pairs(train), build_split(args.validation_data), build_split(args.test_data)


def training_collator(args: DataArguments, processor, num_frames: int | None = None) -> VideoTextCollator:
    return VideoTextCollator(processor, num_frames=num_frames, train=True, backend=args.decode_backend,
                             skip_bad=args.skip_bad, max_words=args.max_words,
                             cache_bytes=args.decoded_cache_mb * 2**20)


def gallery_loaders(args: DataArguments, processor, batch_size: int, num_workers: int):
    """`dataset -> retrieval loaders` for evaluation galleries, with the evaluation frame count."""
    return functools.partial(retrieval_loaders, processor=processor, batch_size=batch_size, num_workers=num_workers,
                             num_frames=args.eval_num_frames, backend=args.decode_backend, max_words=args.max_words)


def media_batch_sampler(pairs: datasets.Dataset, batch_size: int, seed: int, drop_last: bool):
    """Batches grouped by media type when the training data mixes images and videos; else `None`."""
    media_types = list(pairs["media_type"])
    if len(set(media_types)) < 2:
        return None
    return MediaTypeBatchSampler(media_types, batch_size, seed=seed, drop_last=drop_last)


__all__ = ["DataArguments", "build_training_data", "build_split", "training_collator", "gallery_loaders",
           "media_batch_sampler"]
