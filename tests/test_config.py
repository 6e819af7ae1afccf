"""T2V2TConfig: defaults, nested sub-configs, JSON round trip, and a ValueError naming the field for bad values."""

import pytest
from tiny_models import tiny_config

from modeling_t2v2t import T2V2TConfig, T2V2TTextConfig, T2V2TVisionConfig


def test_defaults_follow_vindlu_base():
    config = T2V2TConfig()
    assert config.model_type == "t2v2t"
    assert (config.fusion_mode, config.bypass_mode, config.fusion_layer, config.embed_dim) == ("t2v2t", "self", 9, 256)
    assert (config.temp, config.mlm_probability) == (0.07, 0.5)
    assert isinstance(config.text_config, T2V2TTextConfig) and config.text_config.num_hidden_layers == 12
    assert isinstance(config.vision_config, T2V2TVisionConfig) and config.vision_config.num_patches == 196
    assert config.vision_config.temporal_scale_init_value == 0.0


def test_json_round_trip(tmp_path):
    config = tiny_config(fusion_mode="naive_t2v2t", num_t2v_layers=2, vision_config=dict(num_frames=5))
    config.save_pretrained(tmp_path)
    reloaded = T2V2TConfig.from_pretrained(tmp_path)
    assert reloaded.fusion_mode == "naive_t2v2t" and reloaded.num_t2v_layers == 2
    assert reloaded.vision_config.num_frames == 5 and reloaded.text_config.hidden_size == 32


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(fusion_mode="cross"), r"T2V2TConfig.fusion_mode='cross' is invalid"),
        (dict(bypass_mode="gate"), r"T2V2TConfig.bypass_mode='gate' is invalid"),
        (dict(rerank_score="itm"), r"T2V2TConfig.rerank_score='itm' is invalid"),
        (dict(num_t2v_layers=0), r"T2V2TConfig.num_t2v_layers=0 is invalid"),
        (dict(fusion_layer=3), r"T2V2TConfig.fusion_layer=3 is invalid: must be in \[0, 2\]"),
        (dict(fusion_layer=-1), r"T2V2TConfig.fusion_layer=-1"),
        (dict(embed_dim=0), r"T2V2TConfig.embed_dim=0"),
        (dict(temp=0.9), r"T2V2TConfig.temp=0.9 is invalid"),
        (dict(temp_min=0.6), r"T2V2TConfig.temp_min=0.6"),
        (dict(mlm_probability=1.0), r"T2V2TConfig.mlm_probability=1.0"),
        (dict(t2v_layer_scale_init_value=0.0), r"T2V2TConfig.t2v_layer_scale_init_value=0.0"),
        (dict(vtm_loss_weight=-1.0), r"T2V2TConfig.vtm_loss_weight=-1.0"),
        (dict(vision_config=dict(image_size=30)), r"T2V2TVisionConfig.patch_size=8 is invalid: image_size \(30\)"),
        (dict(vision_config=dict(num_frames=0)), r"T2V2TVisionConfig.num_frames=0"),
        (dict(vision_config=dict(drop_path_rate=1.5)), r"T2V2TVisionConfig.drop_path_rate=1.5"),
        (dict(vision_config=dict(num_attention_heads=5)), r"T2V2TVisionConfig.num_attention_heads=5"),
        (dict(text_config=dict(hidden_dropout_prob=-0.1)), r"T2V2TTextConfig.hidden_dropout_prob=-0.1"),
        (dict(text_config=dict(mask_token_id=64)), r"T2V2TTextConfig.mask_token_id=64 is invalid"),
    ],
)
def test_bad_values_raise_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_dual_encoder_may_use_every_text_layer():
    assert tiny_config(fusion_mode="none", fusion_layer=3).fusion_layer == 3
    assert tiny_config(fusion_mode="v2t", num_t2v_layers=0).num_t2v_layers == 0  # unused outside T2V2T modes
