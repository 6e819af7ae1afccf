"""`T2V2TModel.text_to_video_attentions`: the per-patch word attention and bypass probabilities the demo overlays
on the frames. Pinned against the hand-set Bypass example and against the model's own bypass output."""

import pytest
import torch

from modeling_t2v2t import T2V2TModel
from test_bypass import hand_set_attention, scene
from tiny_models import tiny_config, tiny_inputs


def test_hand_set_patches_attend_to_their_word_or_bypass():
    attention = hand_set_attention("self")
    words, queries = scene()  # (1, 3, D) words; (1, 2, D) patches: one unrelated to every word, one matching word 1
    with torch.no_grad():
        update, bypass, word_probs = attention(queries, words, output_attentions=True)
        plain_update, plain_bypass = attention(queries, words)
    assert word_probs.shape == (1, 1, 2, 3)
    # The unrelated patch puts (almost) everything on the bypass, the related one on word 1.
    assert bypass[0, 0, 0] > 0.99 and word_probs[0, 0, 0].sum() < 0.01
    assert word_probs[0, 0, 1].argmax() == 1 and word_probs[0, 0, 1, 1] > 0.9
    torch.testing.assert_close(bypass + word_probs.sum(-1), torch.ones_like(bypass))
    # The flag changes nothing else.
    torch.testing.assert_close(update, plain_update)
    torch.testing.assert_close(bypass, plain_bypass)


def test_word_probs_without_bypass_sum_to_one_and_skip_padding():
    attention = hand_set_attention(None)
    words, queries = scene()
    mask = torch.tensor([[1, 1, 0]])
    with torch.no_grad():
        _, bypass, word_probs = attention(queries, words, mask, output_attentions=True)
    assert bypass is None
    torch.testing.assert_close(word_probs.sum(-1), torch.ones(1, 1, 2))
    assert torch.all(word_probs[..., 2] == 0)  # the padded word gets nothing


@pytest.mark.parametrize("bypass_mode", ["self", "null"])
def test_model_attentions_agree_with_score_pairs_bypass_probs(bypass_mode):
    torch.manual_seed(0)
    config = tiny_config(fusion_mode="t2v2t", num_t2v_layers=2, bypass_mode=bypass_mode)
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config)
    with torch.no_grad():
        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        video = model.encode_video(inputs["pixel_values_videos"])
        layers = model.text_to_video_attentions(text, video)
        pairs = model.score_pairs(text_encoding=text, video_encoding=video, output_bypass_probs=True)
    assert len(layers) == config.num_t2v_layers == len(pairs.bypass_probs)
    vision = config.vision_config
    tokens = vision.num_frames * ((vision.image_size // vision.patch_size) ** 2 + 1)
    for (word_probs, bypass), expected in zip(layers, pairs.bypass_probs):
        assert word_probs.shape == (4, vision.num_attention_heads, tokens, inputs["input_ids"].shape[1])
        torch.testing.assert_close(bypass, expected)
        torch.testing.assert_close(bypass + word_probs.sum(-1), torch.ones_like(bypass))
        assert torch.all(word_probs[0, ..., 5:] == 0)  # caption 0 is padded from position 5


def test_models_without_text_to_video_layers():
    torch.manual_seed(0)
    vindlu = T2V2TModel(tiny_config(fusion_mode="v2t")).eval()  # VindLU: no text→video layers
    inputs = tiny_inputs(vindlu.config)
    with torch.no_grad():
        text = vindlu.encode_text(inputs["input_ids"], inputs["attention_mask"])
        assert vindlu.text_to_video_attentions(text, vindlu.encode_video(inputs["pixel_values_videos"])) == ()
    dual = T2V2TModel(tiny_config(fusion_mode="none"))
    with pytest.raises(ValueError, match="joint encoder"):
        dual.text_to_video_attentions(text, None)
