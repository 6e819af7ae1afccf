"""Labelled VTM negatives: hard negatives the data names (the synthetic benchmark's motion and order twins), from the
benchmark's metadata through the collator's (B, B) mask to the draw of VTM's negatives."""

import json
import logging

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import T2V2TConfig, T2V2TModel
from modeling_t2v2t import modeling_t2v2t as modeling
from modeling_t2v2t.losses_t2v2t import sample_vtm_negatives
from processing.batching import labelled_negative_mask
from processing.builders.synthetic import synthetic_twins
from training.arguments import DataArguments
from training.finetune import check_labelled_negatives


def test_labelled_negatives_are_drawn_with_the_given_probability():
    # Four pairs of four videos. Caption 0's labelled negative is video 2 (and only that direction is labelled),
    # caption 1's is video 1 itself (its own video: a positive, so ignored).
    ids = torch.tensor([10, 11, 12, 13])
    labelled = torch.zeros(4, 4, dtype=torch.bool)
    labelled[0, 2] = labelled[1, 1] = True
    similarity = torch.zeros(4, 4)
    torch.manual_seed(0)
    counts = {p: torch.zeros(2) for p in (0.0, 0.5, 1.0)}
    for _ in range(1000):
        for p in counts:
            negative_videos, negative_texts, _ = sample_vtm_negatives(similarity, ids, False, labelled, p)
            assert negative_videos[1] != 1 and all(negative_videos[i] != i for i in range(4))
            counts[p][0] += float(negative_videos[0] == 2)  # text 0 took its labelled video
            counts[p][1] += float(negative_texts[2] == 0)  # video 2 took the caption it is labelled against
    # p = 1: always; p = 0: the uniform draw's 1/3; p = 0.5: 1/2 + 1/2 * 1/3 = 2/3.
    assert (counts[1.0] / 1000).tolist() == [1.0, 1.0]
    assert (counts[0.0] / 1000).tolist() == pytest.approx([1 / 3] * 2, abs=0.05)
    assert (counts[0.5] / 1000).tolist() == pytest.approx([2 / 3] * 2, abs=0.05)


def test_probability_zero_or_no_labels_leave_the_draw_unchanged():
    ids = torch.tensor([0, 1, 2, 3, 4])
    similarity = torch.randn(5, 5, generator=torch.Generator().manual_seed(1))
    labelled = torch.ones(5, 5, dtype=torch.bool)
    draws = []
    for arguments in ((), (labelled, 0.0), (None, 1.0)):
        torch.manual_seed(3)
        draws.append([t.tolist() for t in sample_vtm_negatives(similarity, ids, True, *arguments)])
    assert draws[0] == draws[1] == draws[2]


def test_the_collator_mask_marks_each_pairs_labelled_videos():
    # Videos 7 and 9 are twins; video 5 has none. Batch order: 9, 5, 7, 9 (two captions of video 9).
    mask = labelled_negative_mask([9, 5, 7, 9], {7: {9}, 9: {7}})
    assert mask.tolist() == [[False, False, True, False],
                             [False, False, False, False],
                             [True, False, False, True],
                             [False, False, True, False]]


@pytest.fixture(scope="module")
def twin_benchmark(tiny_train_benchmark):
    spec, metadata = tiny_train_benchmark
    twins = synthetic_twins(["motion", "order"], **{k: v for k, v in spec.items() if k != "builder"})
    return spec, twins, metadata


def test_synthetic_twins_pair_each_variant_with_its_base(twin_benchmark):
    spec, twins, metadata = twin_benchmark
    train = [video for video in metadata if video["split"] == "train"]
    path = {video["video_id"]: video["video"] for video in train}
    expected = {}
    for video in train:
        if video["factor"] in ("motion", "order"):
            expected.setdefault(video["video"], set()).add(path[video["base"]])
            expected.setdefault(path[video["base"]], set()).add(video["video"])
    assert expected, "the tiny benchmark should hold at least one motion or order variant"
    assert twins == expected
    kwargs = {k: v for k, v in spec.items() if k != "builder"}
    assert synthetic_twins(["colour"], **kwargs).keys().isdisjoint(
        {video["video"] for video in train if video["factor"] in ("motion", "order")})
    with pytest.raises(ValueError, match="'speed'"):
        synthetic_twins(["order", "speed"], **kwargs)


def test_the_training_collator_carries_the_twins(twin_benchmark):
    from training.data_setup import build_training_data, labelled_negatives

    spec, twins, _ = twin_benchmark
    args = DataArguments(train_data=json.dumps([spec]), batch_groups="family",
                         labelled_negative_factors=json.dumps(["motion", "order"]))
    _, _, _, videos = build_training_data(args, return_videos=True)
    rows = labelled_negatives(args, videos)
    row_of = {video_id: row for row, video_id in enumerate(videos["video_id"])}
    assert rows == {row_of[video]: {row_of[other] for other in others} for video, others in twins.items()}


def test_arguments_and_models_that_cannot_use_labels_are_refused(twin_benchmark, caplog):
    spec = json.dumps([twin_benchmark[0]])
    with pytest.raises(ValueError, match="needs --batch_groups family"):
        DataArguments(train_data=spec, labelled_negative_factors=json.dumps(["order"]))
    with pytest.raises(ValueError, match=r"\['speed'\] are not factors"):
        DataArguments(train_data=spec, batch_groups="family", labelled_negative_factors=["order", "speed"])
    with pytest.raises(ValueError, match="empty list"):
        DataArguments(train_data=spec, batch_groups="family", labelled_negative_factors="[]")
    args = DataArguments(train_data=spec, batch_groups="family", labelled_negative_factors=json.dumps(["order"]))
    # The command line gives words (`nargs="+"`) or one JSON list; both read the same.
    for given in (["motion", "order"], ['["motion", "order"]']):
        assert DataArguments(train_data=spec, batch_groups="family",
                             labelled_negative_factors=given).labelled_negative_factors == ["motion", "order"]
    with pytest.raises(ValueError, match="vtm_labelled_negative_prob > 0"):
        check_labelled_negatives(args, T2V2TConfig())  # probability 0
    with pytest.raises(ValueError, match="no joint encoder"):
        check_labelled_negatives(args, T2V2TConfig(fusion_mode="none", vtm_labelled_negative_prob=0.5))
    check_labelled_negatives(args, T2V2TConfig(vtm_labelled_negative_prob=0.5))
    with caplog.at_level(logging.WARNING):
        check_labelled_negatives(DataArguments(train_data=spec), T2V2TConfig(vtm_labelled_negative_prob=0.5))
    assert "no --labelled_negative_factors" in caplog.text
    with pytest.raises(ValueError, match="vtm_labelled_negative_prob"):
        T2V2TConfig(vtm_labelled_negative_prob=1.5)


def test_the_model_passes_the_labels_to_the_vtm_draw(monkeypatch):
    seen = []

    def spy(*arguments):
        seen.append(arguments)
        return sample_vtm_negatives(*arguments)

    monkeypatch.setattr(modeling, "sample_vtm_negatives", spy)
    model = T2V2TModel(tiny_config(vtm_labelled_negative_prob=0.75, vtm_hard_negatives=False)).eval()
    inputs = tiny_inputs(model.config)
    labelled = torch.zeros(4, 4, dtype=torch.bool)
    labelled[0, 3] = labelled[3, 0] = True
    out = model(**inputs, labelled_negatives=labelled, return_loss=True)
    assert torch.isfinite(out.loss_vtm)
    assert seen[-1][3] is labelled and seen[-1][4] == 0.75
    with pytest.raises(ValueError, match=r"\(4, 4\) bool tensor"):
        model(**inputs, labelled_negatives=labelled[:3], return_loss=True)


def test_add_mode_keeps_the_batch_negatives_and_adds_the_labelled_pairs(monkeypatch):
    # Pairs 0 and 3 are each other's labelled negative; with "add" and probability 1, VTM scores the 4 positives,
    # one batch negative per text and per video (4 + 4), and then text 0 against video 3 and text 3 against video 0
    # once for each direction (2 + 2): 16 pairs, the first 4 labelled as matches.
    seen = {}
    model = T2V2TModel(tiny_config(vtm_labelled_negative_prob=1.0, vtm_labelled_negative_mode="add",
                                   vtm_hard_negatives=False)).eval()
    fuse = model.fuse

    def spy(*arguments, **kwargs):
        seen.update(text_index=kwargs["text_index"].tolist(), video_index=kwargs["video_index"].tolist())
        return fuse(*arguments, **kwargs)

    monkeypatch.setattr(model, "fuse", spy)
    labelled = torch.zeros(4, 4, dtype=torch.bool)
    labelled[0, 3] = labelled[3, 0] = True
    out = model(**tiny_inputs(model.config), labelled_negatives=labelled, return_loss=True)
    text_index, video_index = seen["text_index"], seen["video_index"]
    assert len(text_index) == len(video_index) == 16
    assert text_index[:4] == video_index[:4] == [0, 1, 2, 3]
    assert all(t != v for t, v in zip(text_index[4:12], video_index[4:12]))  # the batch negatives
    assert list(zip(text_index[12:], video_index[12:])) == [(0, 3), (3, 0), (3, 0), (0, 3)]
    assert torch.isfinite(out.loss_vtm) and out.vtm_logits.shape == (4, 2)


def test_replace_mode_is_the_default_and_the_mode_is_checked():
    assert T2V2TConfig().vtm_labelled_negative_mode == "replace"
    with pytest.raises(ValueError, match="vtm_labelled_negative_mode"):
        T2V2TConfig(vtm_labelled_negative_mode="both")
