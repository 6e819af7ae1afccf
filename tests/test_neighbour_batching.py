"""Nearest-neighbour training batches (`batch_groups="neighbours"`): groups of videos whose captions the model
embeds alike, dealt by `processing.neighbour_batching` and refreshed by `NeighbourRegroupCallback`."""

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from test_training import run_config, write_config

from processing.group_batching import GroupBatchSampler
from processing.neighbour_batching import group_summary, mean_embedding_per_video, nearest_neighbour_groups
from training.arguments import DataArguments
from training.neighbour_regrouping import NeighbourRegroupCallback


def _clusters() -> tuple[torch.Tensor, list[int]]:
    """12 unit vectors in 3 tight clusters of 4 (around the x, y and z axes), rows interleaved."""
    generator = torch.Generator().manual_seed(0)
    rows, labels = [], []
    for member in range(4):
        for axis in range(3):
            vector = torch.zeros(3)
            vector[axis] = 1.0
            rows.append(vector + 0.05 * torch.randn(3, generator=generator))
            labels.append(axis)
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_are_the_clusters_whatever_the_anchor_order(seed):
    embeddings, labels = _clusters()
    groups = nearest_neighbour_groups(embeddings, group_size=4, seed=seed)
    members = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    assert sorted(sorted(rows) for rows in members.values()) == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
    summary = group_summary(groups, embeddings, labels)
    assert summary["groups"] == 3 and summary["mean_group_size"] == 4.0
    assert summary["same_label_pairs"] == 1.0 and summary["mean_member_cosine"] > 0.99


def test_smaller_groups_take_nearest_first_and_every_row_is_grouped_once():
    # Points on a line: 0, 1, 2, 10, 11, 12. Groups of 2 never join rows 2 and 3 (8 apart) while a closer pair is free.
    positions = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0, 12.0])
    # Inner product of e(p) = (cos, sin) of a small angle per position orders neighbours by distance.
    embeddings = torch.stack([torch.cos(positions / 20), torch.sin(positions / 20)], dim=1)
    for seed in range(5):
        groups = nearest_neighbour_groups(embeddings, group_size=2, seed=seed)
        assert len(groups) == 6 and all(group >= 0 for group in groups)
        sizes = torch.bincount(torch.tensor(groups)).tolist()
        assert max(sizes) <= 2
        assert groups[2] != groups[3]  # the two halves are never mixed
        assert groups[0] != groups[5]


def test_mean_embedding_per_video_and_errors():
    captions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    per_video = mean_embedding_per_video(captions, [7, 7, 2])
    assert sorted(per_video) == [2, 7]
    assert torch.allclose(per_video[7], torch.tensor([2 ** -0.5, 2 ** -0.5]))
    assert torch.allclose(per_video[2], torch.tensor([0.6, 0.8]))
    with pytest.raises(ValueError, match="3 caption embeddings for 2 video indices"):
        mean_embedding_per_video(captions, [0, 1])
    with pytest.raises(ValueError, match="group_size=0"):
        nearest_neighbour_groups(captions, group_size=0)
    with pytest.raises(ValueError, match="num_candidates=1 is below group_size=2"):
        nearest_neighbour_groups(captions, group_size=2, num_candidates=1)


class _WordModel(torch.nn.Module):
    """`get_text_features` = the caption's first token id as a one-hot over 4 ids (so captions starting alike are
    neighbours); `shift` rotates the ids, to see a regrouping follow the model."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.shift = 0

    def get_text_features(self, input_ids, attention_mask=None):
        return torch.nn.functional.one_hot((input_ids[:, 0] + self.shift) % 4, 4).float()


class _FirstWordProcessor:
    """Tokenises a caption into its first word's number ("3 ..." -> [3])."""

    def __call__(self, text, padding=None):
        return {"input_ids": torch.tensor([[int(caption.split()[0])] for caption in text])}


def test_callback_regroups_by_the_current_model_on_schedule(caplog):
    # 8 videos, 2 captions each; video v's captions start with v % 4, so videos v and v + 4 are neighbours.
    video_index = [video for video in range(8) for _ in range(2)]
    captions = [f"{video % 4} caption {copy}" for video in range(8) for copy in range(2)]
    sampler = GroupBatchSampler(video_index, list(range(8)), batch_size=4)
    model = _WordModel()
    labels = [video % 2 for video in range(8)]  # only logged
    callback = NeighbourRegroupCallback(sampler, _FirstWordProcessor(), captions, video_index, group_size=2,
                                        refresh_epochs=2, labels=labels, progress=False)
    with caplog.at_level(logging.INFO, logger="training.neighbour_regrouping"):
        callback.on_epoch_begin(None, SimpleNamespace(epoch=0.0), None, model=model)
    assert sorted(sampler.videos_of_group.values()) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert "4 groups of 2.00 videos" in caplog.text and "100.0% of member pairs share a label" in caplog.text
    assert model.training  # the mode the Trainer had is restored
    for epoch in (1.0, 2.0, 3.0):
        callback.on_epoch_begin(None, SimpleNamespace(epoch=epoch), None, model=model)
    assert callback.regroupings == 2  # epochs 0 and 2
    # Whole groups still share batches, and every pair comes once.
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(16))
    first_round = [video_index[i] for batch in batches for i in batch][:8]
    assert all(abs(first_round.index(v) - first_round.index(v + 4)) == 1 for v in range(4))
    with pytest.raises(ValueError, match="refresh_epochs=-1"):
        NeighbourRegroupCallback(sampler, None, captions, video_index, group_size=2, refresh_epochs=-1)


def test_arguments_reject_bad_neighbour_settings():
    spec = json.dumps([{"builder": "synthetic", "split": "train"}])
    with pytest.raises(ValueError, match="neighbour_group_size must be >= 2"):
        DataArguments(train_data=spec, batch_groups="neighbours", neighbour_group_size=1)
    with pytest.raises(ValueError, match="neighbour_refresh_epochs must be >= 0"):
        DataArguments(train_data=spec, batch_groups="neighbours", neighbour_refresh_epochs=-1)
    with pytest.raises(ValueError, match="needs --batch_groups family"):
        DataArguments(train_data=spec, batch_groups="neighbours", labelled_negative_factors=["order"])


@pytest.mark.slow
def test_finetune_with_neighbour_batches(tmp_path, caplog):
    config = run_config(tmp_path, tmp_path / "bench", batch_groups="neighbours", neighbour_group_size=2,
                        per_device_train_batch_size=4)
    from training import finetune

    with caplog.at_level(logging.INFO, logger="training.neighbour_regrouping"):
        trainer, test_metrics = finetune.main([write_config(tmp_path / "config.json", config)])
    regroupings = [record.message for record in caplog.records if "Neighbour groups for epoch" in record.message]
    assert len(regroupings) == 2  # refreshed every epoch, two epochs
    assert "of member pairs share a label" in regroupings[0]  # synthetic data: family share logged
    assert trainer.state.global_step > 0 and "test_reranked_t2v_R1" in test_metrics
    with pytest.raises(ValueError, match="neighbour_group_size 8 is above the training batch size 4"):
        finetune.main([write_config(tmp_path / "big.json", {**config, "neighbour_group_size": 8})])
