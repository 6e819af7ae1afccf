"""Family-grouped training batches: every pair once per epoch, one caption per video per round, siblings together."""

import pytest

from processing.group_batching import GroupBatchSampler


def test_every_pair_once_and_siblings_share_batches():
    # 6 videos in 3 families (0,1,2 | 3,4 | 5); video v has v % 3 + 1 captions.
    group_of_video = ["a", "a", "a", "b", "b", "c"]
    video_index = [v for v in range(6) for _ in range(v % 3 + 1)]
    sampler = GroupBatchSampler(video_index, group_of_video, batch_size=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    assert sorted(i for batch in batches for i in batch) == list(range(len(video_index)))
    order = [video_index[i] for batch in batches for i in batch]
    # Round 0 holds each video's first caption (6 pairs), families contiguous: "a" videos adjacent.
    first_round = order[:6]
    assert sorted(first_round) == list(range(6))
    positions = sorted(first_round.index(v) for v in (0, 1, 2))
    assert positions == list(range(positions[0], positions[0] + 3))
    sampler.set_epoch(1)
    assert [i for batch in sampler for i in batch] != [i for batch in batches for i in batch]


def test_drop_last_and_bad_indices():
    sampler = GroupBatchSampler([0, 0, 1, 1, 2], ["x", "x", "y"], batch_size=2, drop_last=True)
    assert len(sampler) == 2 and all(len(batch) == 2 for batch in sampler)
    with pytest.raises(ValueError, match="video_index=3"):
        GroupBatchSampler([0, 3], ["x", "y"], batch_size=2)


def test_synthetic_families_group_the_training_batches(tmp_path):
    import json

    from training.arguments import DataArguments
    from training.data_setup import build_training_data, train_batch_sampler

    spec = {"builder": "synthetic", "split": "train", "out_dir": str(tmp_path), "num_videos": 12, "seed": 0,
            "workers": 1, "progress": False, "frames": 4, "size": 32}
    args = DataArguments(train_data=json.dumps([spec]), batch_groups="family")
    pairs, _, _, videos = build_training_data(args, return_videos=True)
    sampler = train_batch_sampler(args, videos, pairs, batch_size=4, seed=0, drop_last=False)
    metadata = json.loads((tmp_path / "metadata.json").read_text())["videos"]
    family = {video["video"]: video["family"] for video in metadata if video["split"] == "train"}
    # The sampler's groups are the benchmark's families, by video row.
    expected = {}
    for row, video_id in enumerate(videos["video_id"]):
        expected.setdefault(family[video_id], []).append(row)
    assert sorted(sampler.videos_of_group.values()) == sorted(expected.values())
    assert sorted(i for batch in sampler for i in batch) == list(range(len(pairs)))
    with pytest.raises(ValueError, match="batch_groups='siblings'"):
        DataArguments(train_data=json.dumps([spec]), batch_groups="siblings")


def _worker_pid(batch):
    import os

    import torch

    return {"pid": torch.tensor([os.getpid()])}


def test_batch_sampler_loader_keeps_its_workers_between_epochs(tmp_path):
    # The decoded-video cache lives in the DataLoader worker: a worker restarted every epoch would decode again.
    import torch
    from transformers import TrainingArguments

    from training.retrieval_trainer import RetrievalTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", dataloader_num_workers=1,
                             dataloader_persistent_workers=True)
    trainer = RetrievalTrainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=list(range(4)),
                               data_collator=_worker_pid, retrieval_loaders=None,
                               train_batch_sampler=[[0, 1], [2, 3]])
    loader = trainer.get_train_dataloader()
    first, second = ({int(batch["pid"]) for batch in loader} for _ in range(2))
    assert len(first) == 1 and first == second
