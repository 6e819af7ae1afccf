"""Initialising T2V2T from transformers BEiT / ViT and BERT checkpoints (tiny random ones saved by the test):
the copied towers must compute exactly the original models' functions."""

import pytest
import torch
from tiny_models import tiny_tokenizer
from transformers import BeitConfig, BeitModel, BertConfig, BertModel, ViTConfig, ViTModel

from modeling_t2v2t import T2V2TForPreTraining, T2V2TModel

TOLERANCE = dict(rtol=0, atol=1e-5)
IMAGE = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=48)


def randomise(model):
    """Random values everywhere, so zero-initialised parts (relative bias, cls token, layer scale) are tested."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


IMAGE_TOWERS = {
    "beit_relative_bias": lambda: BeitModel(BeitConfig(**IMAGE, use_relative_position_bias=True,
                                                       use_mean_pooling=True, layer_scale_init_value=0.1)),
    "beit_shared_bias_abs_pos_cls": lambda: BeitModel(BeitConfig(
        **IMAGE, use_shared_relative_position_bias=True, use_absolute_position_embeddings=True,
        use_mean_pooling=False, layer_scale_init_value=0.1)),
    "vit": lambda: ViTModel(ViTConfig(**IMAGE)),
}


@pytest.fixture(scope="module")
def text_tower(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    bert = randomise(BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                          intermediate_size=48, max_position_embeddings=64)))
    bert.save_pretrained(folder)
    tiny_tokenizer(folder).save_pretrained(folder)
    return folder, bert


@pytest.mark.parametrize("tower", sorted(IMAGE_TOWERS))
def test_video_encoder_equals_image_model_per_frame(tower, tmp_path, text_tower):
    image_model = randomise(IMAGE_TOWERS[tower]())
    image_model.save_pretrained(tmp_path)
    model, info = T2V2TModel.from_vision_text_pretrained(
        str(tmp_path), str(text_tower[0]), vision_config_overrides={"num_frames": 1}, fusion_layer=2,
        output_loading_info=True,
    )
    model.eval()
    # Every tower weight was copied: only T2V2T's own modules are new.
    new_weights = ("text_model.encoder.layer.2.crossattention.", "vision_proj.", "text_proj.", "temp",
                   "t2v_layers.", "itm_head.", "vision_layernorm.")
    tower_weights_not_copied = [key for key in info["missing_keys"] if "temporal" not in key
                         and not key.startswith(new_weights)]
    assert tower_weights_not_copied == []
    assert any("temporal_attention" in key for key in info["missing_keys"])
    assert all(key.endswith(("pooler.dense.weight", "pooler.dense.bias")) for key in info["unexpected_keys"])

    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = image_model(pixels)
        one_frame = model.vision_model(pixels[:, None])
        # Two different frames per clip: with the temporal gates at 0 each frame is still the image model's output.
        two_frames = model.vision_model(torch.stack([pixels, pixels.flip(0)], dim=1))
    assert model.vision_model.layers[0].temporal_attention.gate.item() == 0.0
    torch.testing.assert_close(one_frame.last_hidden_state[:, 0], expected.last_hidden_state, **TOLERANCE)
    torch.testing.assert_close(two_frames.last_hidden_state[:, 0], expected.last_hidden_state, **TOLERANCE)
    torch.testing.assert_close(two_frames.last_hidden_state[:, 1], expected.last_hidden_state.flip(0), **TOLERANCE)
    if tower.startswith("beit"):  # BeitPooler: mean-pooled LayerNorm, or the [CLS] token
        torch.testing.assert_close(one_frame.pooler_output[:, 0], expected.pooler_output, **TOLERANCE)
    else:  # ViT's frame feature is its normalised [CLS] token (not the tanh pooler)
        torch.testing.assert_close(one_frame.pooler_output[:, 0], expected.last_hidden_state[:, 0], **TOLERANCE)


def test_text_encoder_equals_bert(tmp_path, text_tower):
    folder, bert = text_tower
    image_model = randomise(IMAGE_TOWERS["vit"]())
    image_model.save_pretrained(tmp_path)
    model = T2V2TModel.from_vision_text_pretrained(str(tmp_path), str(folder), fusion_layer=2).eval()
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    batch = tokenizer(["a red square moves left", "blue circle"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = bert(**batch, output_hidden_states=True)
        full = model.text_model(batch["input_ids"], batch["attention_mask"])  # every layer, no video
        text_only = model.encode_text(batch["input_ids"], batch["attention_mask"]).text_states  # layers [0, 2)
    torch.testing.assert_close(full, expected.last_hidden_state, **TOLERANCE)
    torch.testing.assert_close(text_only, expected.hidden_states[2], **TOLERANCE)
    # Special token ids come from the tokenizer saved beside the checkpoint.
    assert (model.config.text_config.cls_token_id, model.config.text_config.mask_token_id) == (
        tokenizer.cls_token_id, tokenizer.mask_token_id)


def test_pretraining_model_from_towers_and_wrong_tower_types(tmp_path, text_tower):
    image_model = randomise(IMAGE_TOWERS["beit_relative_bias"]())
    image_model.save_pretrained(tmp_path / "beit")
    model = T2V2TForPreTraining.from_vision_text_pretrained(str(tmp_path / "beit"), str(text_tower[0]),
                                                            fusion_layer=2)
    torch.testing.assert_close(model.t2v2t.text_model.embeddings.word_embeddings.weight,
                               text_tower[1].embeddings.word_embeddings.weight, rtol=0, atol=0)
    assert model.cls.predictions.decoder.weight is model.t2v2t.text_model.embeddings.word_embeddings.weight
    with pytest.raises(ValueError, match="'bert' model; T2V2T's video encoder loads 'beit' or 'vit'"):
        T2V2TModel.from_vision_text_pretrained(str(text_tower[0]), str(text_tower[0]))
    with pytest.raises(ValueError, match="'beit' model; T2V2T loads 'bert'"):
        T2V2TModel.from_vision_text_pretrained(str(tmp_path / "beit"), str(tmp_path / "beit"))
