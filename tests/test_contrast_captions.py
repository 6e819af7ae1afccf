"""Contrast captions: the synthetic benchmark's rewrites that make a caption false of its video in motion or order,
their way through the collator, and their use as hard negative texts in VTM and VTC."""

import json
import logging

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config, tiny_inputs, tiny_tokenizer
from tiny_media import write_grey_video

from modeling_t2v2t import T2V2TConfig, T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.losses_t2v2t import vtc_loss
from processing.batching import VideoTextCollator, caption_pairs
from processing.builders.synthetic import synthetic_contrast_captions
from processing.schema import build_dataset, make_record
from processing.synthetic.contrast_captions import contrast_captions
from training.arguments import DataArguments
from training.finetune import check_contrast_captions

RED_CIRCLE = {"shape": "circle", "colour": "red", "size": "small", "position": [0.5, 0.5]}
BLUE_BOX = {"shape": "square", "colour": "blue", "size": "large", "position": [0.3, 0.3]}


def scene(kind, events, objects=(RED_CIRCLE,)):
    return {"kind": kind, "objects": list(objects), "events": [{"object": o, "action": a} for o, a in events]}


def caption(text, events, partial=False):
    return {"text": text, "partial": partial, "events": events}


def test_motion_contrast_reverses_the_action_with_the_same_synonym():
    single = scene("single", [(0, "move_left")])
    # "slides to the left" is the 2nd phrase of move_left, "slides to the right" the 2nd of move_right.
    assert contrast_captions(single, caption("A small red circle slides to the left.", [0])) == [
        "A small red circle slides to the right."]
    assert contrast_captions(single, caption("There is a tiny red disc; it grows larger.", [0]), ("order",)) == []
    spin = scene("single", [(0, "spin")], objects=[BLUE_BOX])
    assert contrast_captions(spin, caption("A large blue box spins.", [0])) == []  # spin has no opposite


def test_order_contrast_swaps_the_events_of_one_object_or_the_clauses_of_two():
    sequence = scene("sequence", [(0, "move_up"), (0, "shrink")])
    text = "A small red circle rises and then gets smaller."
    assert contrast_captions(sequence, caption(text, [0, 1])) == [
        "A small red circle sinks and then gets smaller.",
        "A small red circle rises and then gets bigger.",
        "A small red circle gets smaller and then rises."]
    pair = scene("pair", [(0, "move_down"), (1, "move_down")], objects=[RED_CIRCLE, BLUE_BOX])
    text = "The small red circle sinks; next, a large blue box drops down."
    # Both objects move down: each verb phrase is found right after its own subject.
    assert contrast_captions(pair, caption(text, [0, 1])) == [
        "The small red circle rises; next, a large blue box drops down.",
        "The small red circle sinks; next, a large blue box goes upward.",
        "A large blue box drops down; next, the small red circle sinks."]


def test_a_rewrite_that_is_true_of_the_video_or_impossible_is_no_contrast():
    there_and_back = scene("sequence", [(0, "move_left"), (0, "move_right")])
    # The circle does move right (second), so "moves right" is true of the video; the cued partial is kept out too
    # (the cue is not among the facts compared), while "first right, then left" is false and kept.
    assert contrast_captions(there_and_back, caption("A small red circle moves left.", [0], partial=True)) == []
    assert contrast_captions(there_and_back, caption("A small red circle moves left, then moves right.", [0, 1]),
                             ("order",)) == ["A small red circle moves right, then moves left."]
    appears = scene("sequence", [(0, "appear"), (0, "grow")])
    # "grows, then appears" cannot happen (an object acts only once it is there): text alone would refute it.
    assert contrast_captions(appears, caption("A small red circle appears, then grows.", [0, 1]), ("order",)) == []
    with pytest.raises(ValueError, match="'size'"):
        contrast_captions(appears, caption("A small red circle appears.", [0]), ("size",))


@pytest.fixture(scope="module")
def contrast_benchmark(tiny_train_benchmark):
    spec, metadata = tiny_train_benchmark
    contrasts = synthetic_contrast_captions(["motion", "order"], **{k: v for k, v in spec.items() if k != "builder"})
    return spec, contrasts, metadata


def test_the_benchmark_contrasts_every_caption_it_can(contrast_benchmark):
    spec, contrasts, metadata = contrast_benchmark
    train = [video for video in metadata if video["split"] == "train"]
    expected = {video["video"]: {c["text"]: contrast_captions(video["scene"], c) for c in video["captions"]}
                for video in train}
    expected = {video: {text: found for text, found in captions.items() if found}
                for video, captions in expected.items()}
    assert contrasts == {video: captions for video, captions in expected.items() if captions}
    assert sum(len(texts) for captions in contrasts.values() for texts in captions.values()) > 20
    for video in train:  # a contrast is never one of its video's own captions
        own = {c["text"] for c in video["captions"]}
        assert not own & {text for texts in contrasts.get(video["video"], {}).values() for text in texts}
    with pytest.raises(ValueError, match="'colour'"):
        synthetic_contrast_captions(["colour"], **{k: v for k, v in spec.items() if k != "builder"})


def test_the_training_collator_gets_them_by_video_row(contrast_benchmark):
    from training.data_setup import build_training_data, contrast_captions as rows_contrasts

    spec, contrasts, _ = contrast_benchmark
    args = DataArguments(train_data=json.dumps([spec]), contrast_caption_factors=["motion", "order"])
    _, _, _, videos = build_training_data(args, return_videos=True)
    row_of = {video_id: row for row, video_id in enumerate(videos["video_id"])}
    assert rows_contrasts(args, videos) == {row_of[video]: captions for video, captions in contrasts.items()}
    # per_factor: one map per factor, each holding that factor's rewrites (the collator draws from each).
    args.contrast_caption_draw = "per_factor"
    benchmark = {k: v for k, v in spec.items() if k != "builder"}
    assert rows_contrasts(args, videos) == [
        {row_of[video]: captions for video, captions in synthetic_contrast_captions([factor], **benchmark).items()}
        for factor in ("motion", "order")]
    with pytest.raises(ValueError, match="only the synthetic benchmark"):
        rows_contrasts(DataArguments(train_data=json.dumps([{"builder": "msrvtt", "split": "train_9k",
                                                              "video_root": "videos"}]),
                                     contrast_caption_factors=["order"]), videos)


def test_arguments_and_models_that_cannot_use_contrasts_are_refused(caplog):
    spec = json.dumps([{"builder": "synthetic", "split": "train"}])
    for given in (["motion", "order"], ['["motion", "order"]']):
        assert DataArguments(train_data=spec, contrast_caption_factors=given).contrast_caption_factors == [
            "motion", "order"]
    for bad in (["size"], "[]"):
        with pytest.raises(ValueError, match="contrast_caption_factors"):
            DataArguments(train_data=spec, contrast_caption_factors=bad)
    with pytest.raises(ValueError, match="contrast_caption_draw 'each' is unknown"):
        DataArguments(train_data=spec, contrast_caption_factors=["motion"], contrast_caption_draw="each")
    args = DataArguments(train_data=spec, contrast_caption_factors=["motion"])
    with pytest.raises(ValueError, match="vtm_contrast_captions or vtc_contrast_captions"):
        check_contrast_captions(args, T2V2TConfig())
    check_contrast_captions(args, T2V2TConfig(vtc_contrast_captions=True, fusion_mode="none"))
    with caplog.at_level(logging.WARNING):
        check_contrast_captions(DataArguments(train_data=spec), T2V2TConfig(vtm_contrast_captions=True))
    assert "no --contrast_caption_factors" in caplog.text
    with pytest.raises(ValueError, match="vtm_contrast_captions"):
        T2V2TConfig(vtm_contrast_captions=True, fusion_mode="none")


def test_the_collator_tokenises_one_contrast_per_pair_with_the_captions(tmp_path):
    records = []
    for index, captions in enumerate([["a red square moves left", "red square goes left"], ["a blue circle spins"]]):
        path = write_grey_video(tmp_path / f"clip{index}.mp4", num_frames=8)
        records.append((make_record(str(path), captions, f"clip{index}", "train"), f"entry {index}"))
    rows = list(caption_pairs(build_dataset(records)[0]))
    processor = T2V2TProcessor(T2V2TVideoProcessor(num_frames=2, size={"height": 32, "width": 32}),
                               tiny_tokenizer(tmp_path / "tok"), max_length=12)
    contrasts = {0: {"red square goes left": ["red square goes right", "red square goes up and right"]}}
    batch = VideoTextCollator(processor, num_frames=2, contrast_captions=contrasts)(rows)
    assert batch["contrast_pair_index"].tolist() == [1]  # only the second pair has contrasts
    assert batch["input_ids"].shape[0] == 3
    assert batch["contrast_input_ids"].shape == (1, batch["input_ids"].shape[1])
    drawn = processor.tokenizer.decode(batch["contrast_input_ids"][0], skip_special_tokens=True)
    assert drawn in {processor.tokenizer.decode(processor.tokenizer(text)["input_ids"], skip_special_tokens=True)
                     for text in contrasts[0]["red square goes left"]}
    plain = VideoTextCollator(processor, num_frames=2)(rows)
    assert "contrast_input_ids" not in plain
    # Without contrasts the captions are padded to their own longest, so compare the unpadded tokens.
    assert all((plain["input_ids"][i][plain["attention_mask"][i].bool()] ==
                batch["input_ids"][i][batch["attention_mask"][i].bool()]).all() for i in range(3))


def test_the_collator_draws_one_contrast_from_each_map(tmp_path):
    records = []
    for index, captions in enumerate([["a red square moves left, then grows"], ["a blue circle rises"]]):
        path = write_grey_video(tmp_path / f"clip{index}.mp4", num_frames=8)
        records.append((make_record(str(path), captions, f"clip{index}", "train"), f"entry {index}"))
    rows = list(caption_pairs(build_dataset(records)[0]))
    processor = T2V2TProcessor(T2V2TVideoProcessor(num_frames=2, size={"height": 32, "width": 32}),
                               tiny_tokenizer(tmp_path / "tok"), max_length=16)
    motion = {0: {"a red square moves left, then grows": ["a red square moves right, then grows"]},
              1: {"a blue circle rises": ["a blue circle sinks"]}}
    order = {0: {"a red square moves left, then grows": ["a red square grows, then moves left"]}}
    batch = VideoTextCollator(processor, num_frames=2, contrast_captions=[motion, order])(rows)
    # The first pair has one contrast in each map, the second only a motion one; each comes in map order.
    assert batch["contrast_pair_index"].tolist() == [0, 0, 1]
    decoded = processor.tokenizer.batch_decode(batch["contrast_input_ids"], skip_special_tokens=True)
    expected = [motion[0][rows[0]["caption"]][0], order[0][rows[0]["caption"]][0], "a blue circle sinks"]
    assert decoded == [processor.tokenizer.decode(processor.tokenizer(text)["input_ids"], skip_special_tokens=True)
                       for text in expected]


def test_vtc_contrasts_are_extra_negatives_of_their_own_video_only():
    torch.manual_seed(0)
    text, video = F.normalize(torch.randn(3, 8), dim=-1), F.normalize(torch.randn(3, 8), dim=-1)
    contrast = F.normalize(torch.randn(2, 8), dim=-1)
    ids, pair_of, temperature = torch.tensor([0, 0, 1]), torch.tensor([1, 2]), torch.tensor(0.1)
    loss = vtc_loss(text, video, temperature, ids, gather=False, contrast_text_embeds=contrast,
                    contrast_pair_index=pair_of)
    # By hand: video row r's softmax runs over the 3 captions and the contrasts of pairs of r's video (contrast 0
    # belongs to pair 1, video 0, so it joins rows 0 and 1; contrast 1 to pair 2, video 1, row 2).
    logits_t2v, logits_v2t = text @ video.T / temperature, video @ text.T / temperature
    positives = (ids[:, None] == ids[None, :]).float()
    targets = positives / positives.sum(1, keepdim=True)
    t2v = -(F.log_softmax(logits_t2v, 1) * targets).sum(1).mean()
    v2t = []
    for row, extra in ((0, [0]), (1, [0]), (2, [1])):
        row_logits = torch.cat([logits_v2t[row], video[row] @ contrast[extra].T / temperature])
        v2t.append(-(F.log_softmax(row_logits, 0)[:3] * targets[row]).sum())
    assert torch.allclose(loss, (t2v + torch.stack(v2t).mean()) / 2, atol=1e-6)
    # Two contrasts of one pair (one per factor): both join the rows of that pair's video (0 and 1), row 2 none.
    both = vtc_loss(text, video, temperature, ids, gather=False, contrast_text_embeds=contrast,
                    contrast_pair_index=torch.tensor([0, 0]))
    v2t = [-(F.log_softmax(torch.cat([logits_v2t[row], video[row] @ contrast.T / temperature]), 0)[:3]
             * targets[row]).sum() for row in (0, 1)]
    v2t.append(-(F.log_softmax(logits_v2t[2], 0) * targets[2]).sum())
    assert torch.allclose(both, (t2v + torch.stack(v2t).mean()) / 2, atol=1e-6)
    empty = vtc_loss(text, video, temperature, ids, gather=False, contrast_text_embeds=contrast[:0],
                     contrast_pair_index=pair_of[:0])
    assert torch.equal(empty, vtc_loss(text, video, temperature, ids, gather=False))


def contrast_inputs(config, pairs=(1, 3)):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, config.text_config.vocab_size, (len(pairs), 7), generator=generator)
    ids[:, 0] = config.text_config.cls_token_id
    return dict(contrast_input_ids=ids, contrast_attention_mask=torch.ones_like(ids),
                contrast_pair_index=torch.tensor(pairs))


def test_vtm_scores_each_contrast_against_its_pairs_video_as_a_non_match():
    torch.manual_seed(0)
    model = T2V2TModel(tiny_config(vtm_contrast_captions=True, vtm_hard_negatives=False)).eval()
    inputs = tiny_inputs(model.config)
    torch.manual_seed(5)
    plain = model(**inputs, return_loss=True)
    for pairs in ((1, 3), (1, 1)):  # contrasts of two pairs, or two of one pair (one per factor)
        contrasts = contrast_inputs(model.config, pairs)
        torch.manual_seed(5)  # the same batch negatives
        with_contrasts = model(**inputs, **contrasts, return_loss=True)
        assert torch.equal(plain.loss_vtc, with_contrasts.loss_vtc)  # VTC off for contrasts
        # VTM is a mean over pairs: 4 positives + 8 batch negatives, then the 2 contrasts (label 0) against the
        # videos of their pairs, scored here through the public pair scorer.
        text = model.encode_text(contrasts["contrast_input_ids"], contrasts["contrast_attention_mask"])
        video = model.encode_video(inputs["pixel_values_videos"]).select(contrasts["contrast_pair_index"])
        logits = model.score_pairs(text_encoding=text, video_encoding=video, use_joint_cache=False).vtm_logits
        contrast_loss = F.cross_entropy(logits.float(), torch.zeros(2, dtype=torch.long), reduction="sum")
        assert torch.allclose(with_contrasts.loss_vtm, (plain.loss_vtm * 12 + contrast_loss) / 14, atol=1e-5)


def test_contrasts_are_checked_and_unused_ones_are_named(caplog):
    model = T2V2TModel(tiny_config()).eval()
    inputs, contrasts = tiny_inputs(model.config), contrast_inputs(model.config)
    torch.manual_seed(5)
    plain = model(**inputs, return_loss=True)
    with caplog.at_level(logging.WARNING):
        torch.manual_seed(5)
        unused = model(**inputs, **contrasts, return_loss=True)
    assert "unused" in caplog.text and torch.equal(unused.loss, plain.loss)
    with pytest.raises(ValueError, match="together"):
        model(**inputs, contrast_input_ids=contrasts["contrast_input_ids"], return_loss=True)
    with pytest.raises(ValueError, match="same padded length"):
        model(**inputs, **{**contrasts, "contrast_input_ids": contrasts["contrast_input_ids"][:, :5],
                           "contrast_attention_mask": contrasts["contrast_attention_mask"][:, :5]}, return_loss=True)
    with pytest.raises(ValueError, match="index the batch's 4 pairs"):
        model(**inputs, **contrast_inputs(model.config, pairs=(0, 4)), return_loss=True)
