"""From the scripts' `DataArguments` to the datasets, collator and loaders of `processing`.

A dataset is named by a JSON object: `{"builder": <name in processing.builders.BUILDERS>, ...builder kwargs}`,
e.g. `{"builder": "msrvtt", "split": "train_9k", "annotation_dir": "msrvtt_data", "video_root": "videos"}` or
`{"builder": "synthetic", "split": "train", "num_videos": 2000}`. Training takes a list of them (pretraining mixes
video and image corpora); validation and test take one each.
"""

import functools
import logging

import datasets

from processing.batching import MediaTypeBatchSampler, VideoTextCollator, caption_pairs, retrieval_loaders
from processing.builders import build
from processing.builders.synthetic import synthetic_contrast_captions, synthetic_families, synthetic_twins
from processing.group_batching import GroupBatchSampler

from .arguments import DataArguments
from .neighbour_regrouping import NeighbourRegroupCallback

logger = logging.getLogger(__name__)


def build_split(spec: dict | None) -> datasets.Dataset | None:
    if spec is None:
        return None
    kwargs = {key: value for key, value in spec.items() if key != "builder"}
    return build(spec["builder"], **kwargs)[0]


def build_training_data(args: DataArguments, return_videos: bool = False):
    """(training caption pairs, validation gallery, test gallery), and the training videos (one row each) if
    `return_videos`. Training corpora are concatenated before pairing, so `video_index` stays unique across them."""
    corpora = [build_split(spec) for spec in args.train_data]
    train = corpora[0] if len(corpora) == 1 else datasets.concatenate_datasets(corpora)
    if args.validation_data is None:
        logger.warning("No validation_data: training runs without validation, so no checkpoint is selected by "
                       "validation retrieval. Set validation_data to a dataset to enable it.")
    splits = caption_pairs(train), build_split(args.validation_data), build_split(args.test_data)
    return (*splits, train) if return_videos else splits


def shared_videos(first: datasets.Dataset, second: datasets.Dataset) -> dict[str, list[str]]:
    """The videos two splits share, `{"video": [paths], "video_id": [ids]}` (sorted; empty lists when disjoint)."""
    shared = {}
    for column in ("video", "video_id"):
        if column in first.column_names and column in second.column_names:
            shared[column] = sorted(set(first.unique(column)) & set(second.unique(column)))
        else:
            shared[column] = []
    return shared


def warn_shared_videos(train: datasets.Dataset, validation: datasets.Dataset | None,
                       test: datasets.Dataset | None = None) -> int:
    """
    Log a warning when the validation split shares videos (same path or same `video_id`) with the training data:
    checkpoints selected on it would be selected on videos they trained on (e.g. MSR-VTT's official `validate`
    split lies inside both the 7k and 9k training splits). Also warns when validation shares videos with the test
    split (selection would then see test videos). Returns the number of shared training videos.
    """
    if validation is None:
        return 0
    overlap = 0
    for other, name in ((train, "training"), (test, "test")):
        if other is None:
            continue
        shared = shared_videos(other, validation)
        count = max(len(shared["video"]), len(shared["video_id"]))
        if count:
            examples = (shared["video_id"] or shared["video"])[:3]
            logger.warning(
                "The validation split shares %d of its %d videos with the %s data (by path: %d, by video_id: %d; "
                "e.g. %s): checkpoints selected on it are selected on %s videos. Use a disjoint validation split, "
                "or none (validation_data null) to keep the last checkpoint.", count, len(validation), name,
                len(shared["video"]), len(shared["video_id"]), examples, name)
        if other is train:
            overlap = count
    return overlap


def training_collator(args: DataArguments, processor, num_frames: int | None = None,
                      videos: datasets.Dataset | None = None) -> VideoTextCollator:
    """The training collator; with `args.labelled_negative_factors` it also marks each batch's labelled VTM
    negatives, and with `args.contrast_caption_factors` it adds contrast captions; both need the training `videos`
    (their row is a pair's `video_index`)."""
    labelled = contrasts = None
    for name in ("labelled_negative_factors", "contrast_caption_factors"):
        if getattr(args, name) is not None and videos is None:
            raise ValueError(f"training_collator: --{name} needs the training videos.")
    if args.labelled_negative_factors is not None:
        labelled = labelled_negatives(args, videos)
    if args.contrast_caption_factors is not None:
        contrasts = contrast_captions(args, videos)
    return VideoTextCollator(processor, num_frames=num_frames, train=True, backend=args.decode_backend,
                             skip_bad=args.skip_bad, max_words=args.max_words,
                             cache_bytes=args.decoded_cache_mb * 2**20, labelled_negatives=labelled,
                             contrast_captions=contrasts)


def synthetic_training_specs(args: DataArguments, option: str, lacks: str) -> list[dict]:
    """The builder arguments of each training dataset, all of which must be the synthetic benchmark for `option`
    (`ValueError` naming the dataset and what it `lacks` otherwise)."""
    for spec in args.train_data:
        if spec["builder"] != "synthetic":
            raise ValueError(f"{option}: training dataset {spec} {lacks}.")
    return [{key: value for key, value in spec.items() if key != "builder"} for spec in args.train_data]


def labelled_negatives(args: DataArguments, videos: datasets.Dataset) -> dict[int, set[int]]:
    """`{video row: rows of its labelled hard negatives}` for `--labelled_negative_factors`: the synthetic
    benchmark's twins in those factors (`synthetic_twins`); other builders label none (`ValueError`)."""
    twins = {}
    for benchmark in synthetic_training_specs(args, "--labelled_negative_factors", "labels no hard negatives (only "
                                              "the synthetic benchmark's videos have twins)"):
        twins.update(synthetic_twins(args.labelled_negative_factors, **benchmark))
    row_of = {video_id: row for row, video_id in enumerate(videos["video_id"])}
    labelled = {row_of[video_id]: {row_of[twin] for twin in others if twin in row_of}
                for video_id, others in twins.items() if video_id in row_of}
    logger.info("Labelled VTM negatives (%s twins): %d of %d training videos have one.",
                "/".join(args.labelled_negative_factors), sum(1 for rows in labelled.values() if rows), len(row_of))
    return labelled


def contrast_captions(args: DataArguments, videos: datasets.Dataset) \
        -> dict[int, dict[str, list[str]]] | list[dict[int, dict[str, list[str]]]]:
    """`{video row: {caption: contrast captions}}` for `--contrast_caption_factors`, from the synthetic benchmark
    (`synthetic_contrast_captions`), or with `--contrast_caption_draw per_factor` one such map per factor (the
    collator draws one contrast from each); other builders have none (`ValueError`)."""
    specs = synthetic_training_specs(args, "--contrast_caption_factors", "has no contrast captions (only the "
                                     "synthetic benchmark knows what would make its captions false)")
    groups = ([[factor] for factor in args.contrast_caption_factors] if args.contrast_caption_draw == "per_factor"
              else [args.contrast_caption_factors])
    row_of = {video_id: row for row, video_id in enumerate(videos["video_id"])}
    total = sum(len(captions) for captions in videos["captions"])
    maps = []
    for factors in groups:
        by_video = {}
        for benchmark in specs:
            by_video.update(synthetic_contrast_captions(factors, **benchmark))
        maps.append({row_of[video_id]: captions for video_id, captions in by_video.items() if video_id in row_of})
        logger.info("Contrast captions (%s): %d of %d training captions have at least one.", "/".join(factors),
                    sum(len(captions) for captions in maps[-1].values()), total)
    return maps if args.contrast_caption_draw == "per_factor" else maps[0]


def gallery_loaders(args: DataArguments, processor, batch_size: int, num_workers: int):
    """`dataset -> retrieval loaders` for evaluation galleries, with the evaluation frame count."""
    return functools.partial(retrieval_loaders, processor=processor, batch_size=batch_size, num_workers=num_workers,
                             num_frames=args.eval_num_frames, backend=args.decode_backend, max_words=args.max_words)


def video_groups(args: DataArguments, videos: datasets.Dataset) -> list[str]:
    """Per training video row, its hard-negative group for `batch_groups="family"`: the synthetic benchmark's
    family (other builders have none: `ValueError`)."""
    families = {}
    for spec in args.train_data:
        if spec["builder"] != "synthetic":
            raise ValueError(f"--batch_groups family: training dataset {spec} has no families (only the synthetic "
                             "benchmark's videos do).")
        families.update(synthetic_families(**{key: value for key, value in spec.items() if key != "builder"}))
    missing = [video_id for video_id in videos["video_id"] if video_id not in families]
    if missing:
        raise ValueError(f"--batch_groups family: {len(missing)} training videos have no family (e.g. {missing[:3]}).")
    return [families[video_id] for video_id in videos["video_id"]]


def train_batch_sampler(args: DataArguments, videos: datasets.Dataset, pairs: datasets.Dataset, batch_size: int,
                        seed: int, drop_last: bool):
    """Family-grouped batches (`batch_groups="family"`), nearest-neighbour groups (`"neighbours"`: singleton groups
    until `neighbour_regroup_callback` deals them), else batches grouped by media type when the training data
    mixes images and videos, else `None` (the Trainer's shuffle)."""
    if args.batch_groups == "family":
        sampler = GroupBatchSampler(list(pairs["video_index"]), video_groups(args, videos), batch_size, seed=seed,
                                    drop_last=drop_last)
        logger.info("Training batches hold whole families (%d groups of hard negatives).",
                    len(sampler.videos_of_group))
        return sampler
    if args.batch_groups == "neighbours":
        if args.neighbour_group_size > batch_size:
            raise ValueError(f"--neighbour_group_size {args.neighbour_group_size} is above the training batch size "
                             f"{batch_size}: a group must fit in one batch.")
        if len(set(pairs["media_type"])) > 1:
            raise ValueError("--batch_groups neighbours: the training data mixes images and videos, which cannot "
                             "share a batch; neighbour groups are for video-only training data.")
        # One group per video until NeighbourRegroupCallback deals the first neighbour groups (before epoch 0).
        return GroupBatchSampler(list(pairs["video_index"]), list(range(len(videos))), batch_size, seed=seed,
                                 drop_last=drop_last)
    return media_batch_sampler(pairs, batch_size, seed, drop_last)


def neighbour_regroup_callback(args: DataArguments, sampler: GroupBatchSampler, pairs: datasets.Dataset,
                               videos: datasets.Dataset, processor, seed: int, progress: bool):
    """The callback that deals `batch_groups="neighbours"` groups (`None` for other batch groups). On the synthetic
    benchmark it also logs how often group members are family siblings (the grouping never reads the families)."""
    if args.batch_groups != "neighbours":
        return None
    labels = None
    if all(spec["builder"] == "synthetic" for spec in args.train_data):
        labels = video_groups(args, videos)
    return NeighbourRegroupCallback(
        sampler, processor, list(pairs["caption"]), list(pairs["video_index"]), args.neighbour_group_size,
        refresh_epochs=args.neighbour_refresh_epochs, seed=seed, max_words=args.max_words, labels=labels,
        progress=progress)


def media_batch_sampler(pairs: datasets.Dataset, batch_size: int, seed: int, drop_last: bool):
    """Batches grouped by media type when the training data mixes images and videos; else `None`."""
    media_types = list(pairs["media_type"])
    if len(set(media_types)) < 2:
        return None
    return MediaTypeBatchSampler(media_types, batch_size, seed=seed, drop_last=drop_last)


__all__ = ["build_training_data", "build_split", "training_collator", "gallery_loaders",
           "media_batch_sampler", "train_batch_sampler", "neighbour_regroup_callback", "labelled_negatives", "contrast_captions", "video_groups", "shared_videos", "warn_shared_videos"]
