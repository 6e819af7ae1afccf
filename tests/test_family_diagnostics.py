"""Per-family diagnostics (`modeling_t2v2t.retrieval.families`): win rates checked by hand and against a plain loop,
the synthetic builder's family columns against the benchmark's metadata, and the hook through two-stage evaluation
and training/evaluate_retrieval.py."""

import json
from collections import defaultdict

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.retrieval.evaluation import evaluate_two_stage
from modeling_t2v2t.retrieval.families import (
    FamilyLabels,
    caption_text_scores,
    family_gain_intervals,
    family_win_rates,
    flatten_family_metrics,
    flatten_top1_metrics,
    format_family_table,
    format_top1_table,
    top1_breakdown,
    unflatten_family_gains,
    unflatten_family_metrics,
    unflatten_top1_metrics,
)
from processing.builders import build
from processing.schema import FAMILY_COLUMNS, build_dataset, make_record


def loop_win_rates(scores, text_to_video, labels):
    """The definition, one (caption, video) pair at a time."""
    won, texts, video_pairs = defaultdict(float), defaultdict(set), defaultdict(set)
    count = defaultdict(int)
    for t, own in enumerate(text_to_video):
        for v in range(scores.shape[1]):
            if v == own or labels.video_family[v] != labels.video_family[own]:
                continue
            if labels.caption_partial[t]:
                family = "partial"
            elif labels.video_factor[own] == "" and labels.video_factor[v] != "":
                family = labels.video_factor[v]
            elif labels.video_factor[own] != "" and labels.video_factor[v] == "":
                family = labels.video_factor[own]
            else:
                continue
            own_score, other = float(scores[t, own]), float(scores[t, v])
            won[family] += 1.0 if own_score > other else 0.5 if own_score == other else 0.0
            count[family] += 1
            texts[family].add(t)
            video_pairs[family].add(frozenset((own, v)))
    return {family: (100 * won[family] / count[family], count[family], len(texts[family]), len(video_pairs[family]))
            for family in count}


def test_hand_checked_example():
    # family a: base 0, colour variant 1, motion variant 2; family b: base 3 alone.
    labels = FamilyLabels(["a", "a", "a", "b"], ["", "colour", "motion", ""], [False, True, False, False, False])
    text_to_video = [0, 0, 1, 2, 3]
    scores = torch.tensor([
        [0.9, 0.1, 0.95, 0.0],  # full caption of the base: beats the colour variant, loses to the motion variant
        [0.5, 0.6, 0.4, 0.0],  # partial caption of the base: loses to 1, beats 2 (both count as "partial")
        [0.7, 0.7, 0.0, 0.0],  # the colour variant's caption ties with the base: one half
        [0.2, 0.9, 0.3, 0.0],  # the motion variant's caption beats the base; the colour variant differs twice: skipped
        [0.0, 0.0, 0.0, 1.0],  # no sibling: no pair
    ])
    rates = family_win_rates(scores, text_to_video, labels)
    assert list(rates) == ["colour", "motion", "partial", "all"]
    # Video pairs: {0, 1} (colour), {0, 2} (motion), and both again for the partial caption.
    assert rates["colour"] == {"win_rate": 75.0, "pairs": 2, "captions": 2, "video_pairs": 1}  # (1 + 0.5) / 2
    assert rates["motion"] == {"win_rate": 50.0, "pairs": 2, "captions": 2, "video_pairs": 1}  # (0 + 1) / 2
    assert rates["partial"] == {"win_rate": 50.0, "pairs": 2, "captions": 1, "video_pairs": 2}
    assert rates["all"] == {"win_rate": pytest.approx(100 * 3.5 / 6), "pairs": 6, "captions": 4, "video_pairs": 2}


def test_matches_a_plain_loop_on_random_scores():
    generator = torch.Generator().manual_seed(0)
    factors = ["colour", "shape", "size", "motion", "order"]
    video_family, video_factor = [], []
    for family in range(12):
        size = int(torch.randint(1, 6, (1,), generator=generator))
        for member in range(size):
            video_family.append(f"f{family}")
            video_factor.append("" if member == 0 else factors[int(torch.randint(5, (1,), generator=generator))])
    text_to_video = torch.randint(len(video_family), (200,), generator=generator)
    partial = (torch.rand(200, generator=generator) < 0.2).tolist()
    labels = FamilyLabels(video_family, video_factor, partial)
    # Rounded scores, so that ties happen.
    scores = (torch.rand(200, len(video_family), generator=generator) * 8).round() / 8
    rates = family_win_rates(scores, text_to_video, labels)
    expected = loop_win_rates(scores, text_to_video.tolist(), labels)
    assert set(rates) == set(expected) | {"all"} and len(expected) == 6
    for family, (rate, pairs, captions, video_pairs) in expected.items():
        assert rates[family]["win_rate"] == pytest.approx(rate)
        assert (rates[family]["pairs"], rates[family]["captions"], rates[family]["video_pairs"]) == (
            pairs, captions, video_pairs)
    assert rates["all"]["pairs"] == sum(pairs for _, pairs, _, _ in expected.values())


def test_labels_from_a_dataset_and_errors(tmp_path):
    records = [(make_record(str(tmp_path / f"{i}.mp4"), ["x", "y"], f"v{i}", "test"), f"row {i}") for i in range(2)]
    plain, _ = build_dataset(records, check_files=False)
    assert FamilyLabels.from_dataset(plain) is None
    labelled = plain.add_column("family", ["a", "a"]).add_column("family_factor", ["", "size"])
    labels = FamilyLabels.from_dataset(labelled.add_column("caption_partial", [[False, True], [False, False]]))
    assert labels.caption_partial == [False, True, False, False] and labels.video_factor == ["", "size"]
    with pytest.raises(ValueError, match="Dataset row 1: 2 captions but 1 caption_partial"):
        FamilyLabels.from_dataset(labelled.add_column("caption_partial", [[False, True], [False]]))
    with pytest.raises(ValueError, match="3 caption_partial flags for 2 captions"):
        family_win_rates(torch.zeros(2, 2), [0, 1], FamilyLabels(["a", "a"], ["", "size"], [False] * 3))


def test_flat_metrics_round_trip_and_table():
    results = {"embedding": {"order": {"win_rate": 40.0, "pairs": 10, "captions": 5, "video_pairs": 2},
                             "all": {"win_rate": 45.0, "pairs": 12, "captions": 6, "video_pairs": 3}},
               "reranked": {"order": {"win_rate": 70.0, "pairs": 10, "captions": 5, "video_pairs": 2},
                            "all": {"win_rate": 60.0, "pairs": 12, "captions": 6, "video_pairs": 3}}}
    gains = {"order": {"gain": 30.0, "low": -5.0, "high": 60.0, "decided": False},
             "all": {"gain": 15.0, "low": 2.5, "high": 30.0, "decided": True}}
    flat = flatten_family_metrics(results, "test", gains)
    assert flat["test_family_reranked_order"] == 70.0 and flat["test_family_pairs_all"] == 12
    assert flat["test_family_video_pairs_order"] == 2 and flat["test_family_gain_low_all"] == 2.5
    assert unflatten_family_metrics({**flat, "test_embedding_t2v_R1": 3.0}, "test") == results
    assert unflatten_family_gains({**flat, "test_embedding_t2v_R1": 3.0}, "test") == gains
    assert unflatten_family_gains(flatten_family_metrics(results, "test"), "test") == {}
    table = format_family_table(results).splitlines()
    assert table[0] == "| family | embedding win % | reranked win % | pairs | captions | video pairs |"
    assert table[2] == "| order | 40.0 | 70.0 | 10 | 5 | 2 |"
    table = format_family_table(results, gains=gains).splitlines()
    assert table[0] == ("| family | embedding win % | reranked win % | reranked - embedding [95% CI] | pairs | captions "
                        "| video pairs |")
    assert table[3] == "| all | 45.0 | 60.0 | +15.0 [+2.5, +30.0] | 12 | 6 | 3 |"


def test_gain_intervals_by_hand():
    # One family, two video pairs: {0, 1} (size) with three captions of video 0, {2, 3} (size) with one of video 2.
    labels = FamilyLabels(["a", "a", "b", "b"], ["", "size", "", "size"], [False] * 4)
    text_to_video = [0, 0, 0, 2]
    embedding = torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 3 + [[0.0, 0.0, 0.0, 1.0]])  # every pair lost
    reranked = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3 + [[0.0, 0.0, 0.0, 1.0]])  # video pair {0, 1} won
    gains = family_gain_intervals(reranked, embedding, text_to_video, labels, num_replicates=4000)
    assert list(gains) == ["size", "all"]
    size = gains["size"]
    # Observed: 3 of 4 caption pairs turn from lost to won: +75 points. A replicate draws the two video pairs with
    # replacement: both {0, 1} (3/3 = +100), both {2, 3} (0/1 = 0) or one each (3/4 = +75); probabilities 1/4, 1/4,
    # 1/2, so the 95% interval runs from 0 to +100 and the gain is not decided.
    assert size["gain"] == pytest.approx(75.0) and size["video_pairs"] == 2
    assert (size["low"], size["high"], size["decided"]) == (0.0, 100.0, False)
    assert gains["all"]["gain"] == pytest.approx(75.0)
    # The same captions spread over many video pairs, each pair won: decided.
    many = FamilyLabels([f"f{i // 2}" for i in range(40)], ["", "size"] * 20, [False] * 20)
    text_to_video = list(range(0, 40, 2))
    won = torch.zeros(20, 40)
    won[torch.arange(20), torch.tensor(text_to_video)] = 1.0
    lost = torch.zeros(20, 40)
    lost[torch.arange(20), torch.tensor(text_to_video) + 1] = 1.0
    gains = family_gain_intervals(won, lost, text_to_video, many)
    assert gains["size"] == {"gain": 100.0, "low": 100.0, "high": 100.0, "video_pairs": 20, "decided": True}
    with pytest.raises(ValueError, match="both must score the same"):
        family_gain_intervals(won, lost[:, :39], text_to_video, many)
    with pytest.raises(ValueError, match="confidence must lie in"):
        family_gain_intervals(won, lost, text_to_video, many, confidence=1.0)


def test_gain_intervals_widen_when_captions_share_video_pairs():
    # 60 caption pairs, half won by A over B at random: over 60 independent video pairs, or over 6 video pairs of ten
    # captions each whose outcomes are shared. Clustered evidence gives the wider interval.
    generator = torch.Generator().manual_seed(0)
    outcomes = (torch.rand(6, generator=generator) < 0.5).float()

    def interval(num_video_pairs):
        videos = 2 * num_video_pairs
        labels = FamilyLabels([f"f{i // 2}" for i in range(videos)], ["", "shape"] * num_video_pairs, [False] * 60)
        text_to_video = [2 * (t * num_video_pairs // 60) for t in range(60)]
        a = torch.zeros(60, videos)
        for t, own in enumerate(text_to_video):
            a[t, own] = outcomes[t % 6] if num_video_pairs == 60 else outcomes[own // 2]
        gain = family_gain_intervals(a, torch.full_like(a, 0.5), text_to_video, labels)["shape"]
        return gain["high"] - gain["low"], gain["video_pairs"]

    wide, clusters = interval(6)
    narrow, many = interval(60)
    assert (clusters, many) == (6, 60) and wide > 2 * narrow


def test_top1_breakdown_by_hand():
    # family a: base 0, colour variant 1, motion variant 2; family b: base 3 alone.
    labels = FamilyLabels(["a", "a", "a", "b"], ["", "colour", "motion", ""], [False, True, False, False, False, False])
    text_to_video = [0, 0, 1, 2, 3, 3]
    scores = torch.tensor([
        [0.9, 0.1, 0.2, 0.0],  # base caption, own video first: correct
        [0.1, 0.6, 0.4, 0.0],  # partial caption of the base, the colour variant first: sibling partial
        [0.7, 0.2, 0.0, 0.0],  # the colour variant's caption, the base first: sibling colour
        [0.2, 0.9, 0.3, 0.0],  # the motion variant's caption, the colour variant first: two factors apart
        [0.3, 0.0, 0.0, 0.1],  # family b's caption, video 0 first: another family
        [0.0, 0.0, 0.0, 1.0],  # correct
    ])
    result = top1_breakdown(scores, text_to_video, labels)
    assert list(result) == ["correct", "sibling colour", "sibling partial", "sibling two variants", "other family"]
    assert {bucket: values["captions"] for bucket, values in result.items()} == {
        "correct": 2, "sibling colour": 1, "sibling partial": 1, "sibling two variants": 1, "other family": 1}
    assert result["correct"]["percent"] == pytest.approx(100 * 2 / 6)
    assert sum(values["percent"] for values in result.values()) == pytest.approx(100.0)
    # Correct top-1 count is R@1 by another route.
    assert result["correct"]["captions"] == sum(int(scores[t].argmax()) == v for t, v in enumerate(text_to_video))


def test_top1_breakdown_flat_round_trip_table_and_errors():
    results = {"embedding": {"correct": {"captions": 3, "percent": 75.0},
                             "other family": {"captions": 1, "percent": 25.0}},
               "reranked": {"correct": {"captions": 4, "percent": 100.0}}}
    flat = flatten_top1_metrics(results, "test")
    assert flat == {"test_top1_embedding_correct": 75.0, "test_top1_embedding_other_family": 25.0,
                    "test_top1_reranked_correct": 100.0}
    assert unflatten_top1_metrics({**flat, "test_embedding_t2v_R1": 3.0}, "test", num_captions=4) == results
    table = format_top1_table(results).splitlines()
    assert table[0] == "| top-ranked video | embedding: % (captions) | reranked: % (captions) |"
    assert table[3] == "| other family | 25.0 (1) | 0 |"
    labels = FamilyLabels(["a", "a"], ["", "colour"], [False, False])
    with pytest.raises(ValueError, match="caption_partial flags for 3 captions"):
        top1_breakdown(torch.zeros(3, 2), [0, 1, 1], labels)
    with pytest.raises(ValueError, match=r"scores of shape \(2, 3\)"):
        top1_breakdown(torch.zeros(2, 3), [0, 1], labels)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return {"out_dir": str(tmp_path_factory.mktemp("bench")), "num_videos": 8, "num_test": 6, "num_val": 3,
            "workers": 1, "progress": False}


def test_synthetic_builder_carries_the_metadata(bench):
    test, _ = build("synthetic", split="test", **bench)
    assert set(FAMILY_COLUMNS) <= set(test.column_names)
    metadata = {video["video"]: video for video in json.load(open(f"{bench['out_dir']}/metadata.json"))["videos"]}
    for row in test:
        video = metadata[row["video_id"]]
        assert row["family"] == video["family"] and row["family_factor"] == (video["factor"] or "")
        partial = {caption["text"]: caption["partial"] for caption in video["captions"]}
        assert row["caption_partial"] == [partial[caption] for caption in row["captions"]]
    assert any(factor for factor in test["family_factor"])  # some variant: siblings exist
    train, _ = build("synthetic", split="train", **bench)
    assert not set(FAMILY_COLUMNS) & set(train.column_names)  # concatenates with any corpus
    assert set(FAMILY_COLUMNS) <= set(build("synthetic", split="train", family_labels=True, **bench)[0].column_names)
    paragraph, _ = build("synthetic", split="test", paragraph=True, **bench)
    assert not any(flag for flags in paragraph["caption_partial"] for flag in flags)


def test_caption_text_scores_by_hand():
    # Video 0 has captions [1, 0] and [0, 1]; video 1 has [1, 0] twice (once scaled: embeddings are normalised).
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
    scores = caption_text_scores(embeddings, [0, 0, 1, 1], 2)
    # Own video: the mean cosine to its other captions (caption 0 -> [0, 1]: 0); another video: to all its captions.
    expected = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.5, 1.0], [0.5, 1.0]])
    torch.testing.assert_close(scores, expected)
    # A video with a single caption has no other caption to compare with.
    assert caption_text_scores(embeddings, [0, 0, 0, 1], 2) is None
    with pytest.raises(ValueError, match="names video 2 but there are 2 videos"):
        caption_text_scores(embeddings, [0, 0, 1, 2], 2)


def test_a_text_embedding_blind_to_a_factor_wins_half_of_its_pairs():
    # The base's captions at 0 and 20 degrees, its order variant's at 10 and 30: the variant's captions are as close
    # as the base's own paraphrases, so the text side cannot tell the two videos apart.
    angles = torch.deg2rad(torch.tensor([0.0, 20.0, 10.0, 30.0]))
    embeddings = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = FamilyLabels(["a", "a"], ["", "order"], [False] * 4)
    scores = caption_text_scores(embeddings, [0, 0, 1, 1], 2)
    # 0 deg: own cos 20 > variant (cos 10 + cos 30) / 2 = cos 20 cos 10, won; 20 deg: own cos 20 < variant cos 10,
    # lost; and the variant's captions mirror these.
    assert family_win_rates(scores, [0, 0, 1, 1], labels)["order"] == {"win_rate": 50.0, "pairs": 4, "captions": 4,
                                                                       "video_pairs": 1}


def test_two_stage_evaluation_reports_families_for_both_stages():
    torch.manual_seed(0)
    config = tiny_config(num_t2v_layers=1)
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config, batch=8, seed=1)
    videos = tiny_inputs(config, batch=4, seed=2)["pixel_values_videos"]
    text_to_video = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    labels = FamilyLabels(["a", "a", "a", "b"], ["", "order", "motion", ""], [False, True] * 4)
    result = evaluate_two_stage(model, [{"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}],
                                [videos], text_to_video, 4, k=2, progress=False, family_labels=labels)
    assert result.families["embedding"] == family_win_rates(result.similarity, text_to_video, labels)
    assert result.families["reranked"] == family_win_rates(result.t2v_scores, text_to_video, labels)
    text_embeds = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    text_scores = caption_text_scores(text_embeds, text_to_video, 4)
    assert result.families["text"] == family_win_rates(text_scores, text_to_video, labels)
    assert result.top1["embedding"] == top1_breakdown(result.similarity, text_to_video, labels)
    assert result.top1["reranked"] == top1_breakdown(result.t2v_scores, text_to_video, labels)
    assert result.family_gains == family_gain_intervals(result.t2v_scores, result.similarity, text_to_video, labels)
    assert set(result.families["embedding"]) == {"order", "motion", "partial", "all"}
    assert evaluate_two_stage(model, [{"input_ids": inputs["input_ids"]}], [videos], text_to_video, 4, k=2,
                              progress=False).families == {}


def test_evaluate_retrieval_script_prints_and_saves_families(bench, tmp_path, capsys):
    from training import evaluate_retrieval

    folder = tmp_path / "checkpoint"
    config = tiny_config(vision_config=dict(image_size=32, num_frames=2))
    T2V2TModel(config).save_pretrained(folder)
    T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config.vision_config), tiny_tokenizer(folder / "tok"),
                   max_length=16).save_pretrained(folder)
    report = evaluate_retrieval.main(["--model_name_or_path", str(folder), "--dataset", "synthetic",
                                      "--dataset_kwargs", json.dumps({**bench, "split": "test"}), "--k", "2",
                                      "--frame_order_check", "true"])
    assert set(report["families"]) == {"embedding", "reranked", "text"}
    assert set(report["family_gains"]) == set(report["families"]["reranked"])
    assert report["families"]["embedding"]["all"]["pairs"] > 0
    # Random weights, temporal position embedding at zero: the model is blind to frame order.
    assert report["frame_order"]["num_clips"] == report["num_videos"]
    assert report["frame_order"]["embedding_ratio"] < 1e-3 and report["frame_order"]["score_ratio"] < 1e-3
    printed = capsys.readouterr().out
    assert "Hard-negative families" in printed and "Frame-order sensitivity" in printed
    assert "reranked - embedding [95% CI]" in printed
    assert set(report["top1"]) == {"embedding", "reranked"}
    assert sum(values["captions"] for values in report["top1"]["reranked"].values()) == report["num_texts"]
    assert "top-ranked video falls" in printed
