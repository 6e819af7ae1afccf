"""The frame-order check (`modeling_t2v2t.retrieval.temporal_sensitivity`): zero for an order-blind model, positive
once the temporal position embedding is not zero, and its means recomputed by hand on 4 clips in batches of 2."""

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import T2V2TModel
from modeling_t2v2t.retrieval.temporal_sensitivity import reversal_sensitivity


def setup(position_std: float, fusion_mode: str = "t2v2t"):
    """A tiny model (temporal gates open) and 4 videos with one caption each, in loader batches of 2."""
    torch.manual_seed(0)
    config = tiny_config(fusion_mode=fusion_mode, vision_config=dict(num_frames=4, temporal_scale_init_value=0.5,
                                                                     temporal_position_init_std=position_std))
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config, batch=4)
    # Caption batches padded to different lengths (7 and 6 tokens), as a caption loader gives them.
    captions = [{key: inputs[key][:2] for key in ("input_ids", "attention_mask")},
                {key: inputs[key][2:, :6] for key in ("input_ids", "attention_mask")}]
    clips = inputs["pixel_values_videos"]
    return model, inputs, captions, [clips[:2], clips[2:]]


def check(model, captions, videos):
    return reversal_sensitivity(model, captions, videos, torch.arange(4), 4, progress=False)


def test_an_order_blind_model_is_measured_blind():
    model, _, captions, videos = setup(0.0)
    result = check(model, captions, videos)
    assert result.num_clips == 4
    assert result.embedding_change_reversed < 1e-6 < result.embedding_change_other
    assert result.score_change_reversed < 1e-5 < result.score_change_other
    assert result.embedding_ratio < 1e-4 and result.score_ratio < 1e-4


def test_means_match_a_direct_computation():
    model, inputs, captions, videos = setup(0.5)
    result = check(model, captions, videos)
    clips = inputs["pixel_values_videos"]
    with torch.no_grad():
        embed = F.normalize(model.get_video_features(clips), dim=-1)
        backward = F.normalize(model.get_video_features(clips.flip(1)), dim=-1)

        def score(text: int, pixels: torch.Tensor) -> float:
            length = 7 if text < 2 else 6
            return model.score_pairs(inputs["input_ids"][text:text + 1, :length],
                                     inputs["attention_mask"][text:text + 1, :length], pixels[None],
                                     use_joint_cache=False).scores.item()

    following = [1, 0, 3, 2]  # the next clip of the same batch of 2
    reversed_change = sum(1 - embed[v] @ backward[v] for v in range(4)) / 4
    other_change = sum(1 - embed[v] @ embed[following[v]] for v in range(4)) / 4
    assert result.embedding_change_reversed == pytest.approx(float(reversed_change), abs=1e-5)
    assert result.embedding_change_other == pytest.approx(float(other_change), abs=1e-5)
    own = [score(v, clips[v]) for v in range(4)]
    score_reversed = sum(abs(own[v] - score(v, clips[v].flip(0))) for v in range(4)) / 4
    score_other = sum(abs(own[v] - score(v, clips[following[v]])) for v in range(4)) / 4
    assert result.score_change_reversed == pytest.approx(score_reversed, abs=1e-4)
    assert result.score_change_other == pytest.approx(score_other, abs=1e-4)
    assert result.embedding_change_reversed > 1e-4 and result.score_change_reversed > 1e-4
    assert set(result.to_dict()) >= {"embedding_ratio", "score_ratio", "num_clips"}


def test_dual_encoder_gets_the_embedding_check_only():
    model, _, captions, videos = setup(0.5, fusion_mode="none")
    result = check(model, captions, videos)
    assert result.score_change_reversed is None and result.score_ratio is None
    assert "match score" not in result.format()


def test_errors_name_the_problem():
    model, _, captions, videos = setup(0.0)
    with pytest.raises(ValueError, match="batch of clips 2..2 has 1"):
        reversal_sensitivity(model, captions, [videos[0], videos[1][:1]], torch.arange(3), 3, progress=False)
    with pytest.raises(ValueError, match=r"Videos \[3\] have no caption"):
        reversal_sensitivity(model, captions, videos, torch.tensor([0, 1, 2, 2]), 4, progress=False)


def test_a_model_in_training_mode_is_measured_in_eval_mode_and_left_training():
    model, _, captions, videos = setup(0.5)
    expected = check(model, captions, videos)
    model.train()
    assert check(model, captions, videos) == expected  # dropout off while measuring
    assert model.training
