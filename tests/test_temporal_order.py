"""Without frame differences, the video encoder's only source of frame order is its temporal position embedding.

Spatial blocks see one frame at a time, temporal attention is permutation-equivariant over frames, the video
embedding is a mean over frames and cross-attention reads the frames' tokens as a set: with the embedding at zero
(VindLU's initialisation) a clip and its time-reversed twin get the same embedding and the same match score.
`temporal_position_init_std` starts it away from zero, for towers trained from scratch. (`frame_difference_channels`
is a second source: `tests/test_frame_differences.py`.)"""

import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import T2V2TConfig, T2V2TModel


def scores_of_clip_and_reversed_twin(position_std: float, gate: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(video embeddings, match scores) of caption 0 with a clip and with the same clip played backwards."""
    torch.manual_seed(0)
    # Gates open by default, so the temporal attention is in the computation and not merely switched off.
    config = tiny_config(vision_config=dict(num_frames=4, temporal_scale_init_value=gate,
                                            temporal_position_init_std=position_std))
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config, batch=2)
    clip = inputs["pixel_values_videos"][:1]
    videos = torch.cat([clip, clip.flip(1)])  # (2, T, C, H, W): the clip, then its time-reversed twin
    with torch.no_grad():
        embeddings = model.get_video_features(videos)
        scores = model.score_pairs(input_ids=inputs["input_ids"][:1].expand(2, -1),
                                   attention_mask=inputs["attention_mask"][:1].expand(2, -1),
                                   pixel_values_videos=videos).scores
    return embeddings, scores


def test_reversed_twins_are_indistinguishable_with_the_embedding_at_zero():
    embeddings, scores = scores_of_clip_and_reversed_twin(0.0)
    torch.testing.assert_close(embeddings[0], embeddings[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=0)


def test_a_nonzero_temporal_position_embedding_tells_reversed_twins_apart():
    embeddings, scores = scores_of_clip_and_reversed_twin(0.5)
    assert (embeddings[0] - embeddings[1]).abs().max() > 1e-3
    assert (scores[0] - scores[1]).abs().max() > 1e-4


def test_the_quickstart_video_tower_starts_order_aware():
    """The quickstart's temporal start (its config's gates and spread), on a tiny model: not blind to order."""
    config = Path(__file__).resolve().parents[1] / "training" / "configs" / "synthetic_quickstart.json"
    vision = json.loads(config.read_text())["model_config"]["vision_config"]
    embeddings, scores = scores_of_clip_and_reversed_twin(vision["temporal_position_init_std"],
                                                          vision["temporal_scale_init_value"])
    assert (embeddings[0] - embeddings[1]).abs().max() > 1e-3


def test_temporal_position_embedding_initialisation():
    torch.manual_seed(0)
    zero = T2V2TModel(tiny_config(vision_config=dict(num_frames=8, hidden_size=64)))
    assert torch.count_nonzero(zero.vision_model.embeddings.temporal_position_embeddings) == 0
    spread = T2V2TModel(tiny_config(vision_config=dict(num_frames=8, hidden_size=64,
                                                       temporal_position_init_std=0.5)))
    table = spread.vision_model.embeddings.temporal_position_embeddings
    assert 0.4 < table.std().item() < 0.6  # 512 draws of a normal truncated at +-2 (4 std)
    assert table.abs().max().item() <= 2.0


def test_negative_temporal_position_init_std_is_rejected():
    with pytest.raises(ValueError, match="temporal_position_init_std=-0.1 is invalid"):
        T2V2TConfig(vision_config=dict(temporal_position_init_std=-0.1))
