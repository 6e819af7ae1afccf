"""`frame_difference_channels`: the patch embedding also sees each frame minus the frame before it (TSN's RGB
difference), so a clip's direction of change is visible frame by frame, without the temporal pathway."""

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs
from transformers import BeitConfig

from modeling_t2v2t import T2V2TModel
from modeling_t2v2t.configuration_t2v2t import T2V2TVisionConfig
from modeling_t2v2t.modeling_video_encoder import with_frame_differences
from modeling_t2v2t.tower_loading import vision_config_from_image_config

STEM = dict(patch_embedding="conv_stem", conv_stem_channels=[4, 6])


def test_each_frame_is_followed_by_its_difference_from_the_frame_before():
    # One pixel per channel: frames 1, 4, 9 (red), 0, 0, 2 (green); the first frame's difference is zero.
    red, green = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([0.0, 0.0, 2.0])
    clip = torch.stack([red, green], dim=-1)[None, :, :, None, None]  # (1, T=3, C=2, 1, 1)
    out = with_frame_differences(clip)[0, :, :, 0, 0]
    assert out.tolist() == [[1, 0, 0, 0], [4, 0, 3, 0], [9, 2, 5, 2]]


@pytest.mark.parametrize("stem", [{}, STEM], ids=["linear", "conv_stem"])
def test_the_patch_embedding_takes_twice_the_colour_channels(stem):
    model = T2V2TModel(tiny_config(vision_config=dict(frame_difference_channels=True, **stem)))
    patches = model.vision_model.embeddings.patch_embeddings
    first = patches.stem[0] if patches.stem is not None else patches.projection
    assert first.in_channels == 2 * model.config.vision_config.num_channels


def _frame_embeds(model, pixels):
    with torch.no_grad():
        return model.encode_video(pixels).frame_embeds


@pytest.mark.parametrize("differences", [False, True])
def test_without_the_temporal_pathway_only_differences_tell_a_clip_from_its_reversal(differences):
    config = tiny_config(vision_config=dict(use_temporal_attention=False, frame_difference_channels=differences))
    torch.manual_seed(0)
    model = T2V2TModel(config).eval()
    pixels = tiny_inputs(config)["pixel_values_videos"]
    forward, backward = _frame_embeds(model, pixels), _frame_embeds(model, pixels.flip(1))
    if differences:  # reversed, every difference changes sign: the frames no longer look the same
        assert (forward.flip(1) - backward).abs().max() > 1e-2
    else:  # each frame is encoded alone: reversing the clip only reverses the frame embeddings
        torch.testing.assert_close(forward.flip(1), backward, rtol=0, atol=1e-6)


def test_gradients_reach_the_difference_channels():
    config = tiny_config(vision_config=dict(frame_difference_channels=True, **STEM))
    model = T2V2TModel(config)
    model(**tiny_inputs(config), return_loss=True).loss.backward()
    grad = model.vision_model.embeddings.patch_embeddings.stem[0].weight.grad
    assert grad[:, 3:].abs().sum() > 0  # input channels 3-5 are the differences


def test_save_and_load_keep_the_option(tmp_path):
    config = tiny_config(vision_config=dict(frame_difference_channels=True, **STEM))
    torch.manual_seed(0)
    model = T2V2TModel(config).eval()
    model.save_pretrained(tmp_path)
    reloaded = T2V2TModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.vision_config.frame_difference_channels is True
    pixels = tiny_inputs(config)["pixel_values_videos"]
    torch.testing.assert_close(_frame_embeds(reloaded, pixels), _frame_embeds(model, pixels), rtol=0, atol=0)


def test_config_and_pretrained_towers_refuse_it_clearly():
    with pytest.raises(ValueError, match="frame_difference_channels"):
        T2V2TVisionConfig(frame_difference_channels="yes")
    beit = BeitConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                      intermediate_size=48)
    with pytest.raises(ValueError, match="frame_difference_channels=True.*colour channels only"):
        vision_config_from_image_config(beit, {"frame_difference_channels": True})
