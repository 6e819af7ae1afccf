"""T2V2TConfig: defaults, nested sub-configs, JSON round trip, and a ValueError naming the field for bad values."""

import pytest
from tiny_models import tiny_config

from modeling_t2v2t import CRETConfig, T2V2TConfig, T2V2TTextConfig, T2V2TVisionConfig, XPoolConfig
from modeling_t2v2t.validation_t2v2t import ConfigValidator


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
        (dict(text_pooling="max"), r"T2V2TConfig.text_pooling='max' is invalid"),
        (dict(video_pooling="max"), r"T2V2TConfig.video_pooling='max' is invalid"),
        (dict(num_t2v_layers=0), r"T2V2TConfig.num_t2v_layers=0 is invalid"),
        (dict(fusion_layer=3), r"T2V2TConfig.fusion_layer=3 is invalid: must be an integer in \[0, 2\]"),
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
        # The fields issue 13 found unchecked, and wrong types that used to escape as TypeError.
        (dict(text_config=dict(layer_norm_eps=0.0)), r"T2V2TTextConfig.layer_norm_eps=0.0 is invalid: must be a "
                                                      r"number > 0"),
        (dict(text_config=dict(initializer_range=-0.02)), r"T2V2TTextConfig.initializer_range=-0.02 is invalid"),
        (dict(vision_config=dict(layer_norm_eps=-1e-6)), r"T2V2TVisionConfig.layer_norm_eps=-1e-06 is invalid"),
        (dict(vision_config=dict(initializer_range=0)), r"T2V2TVisionConfig.initializer_range=0 is invalid"),
        (dict(vision_config=dict(temporal_scale_init_value=float("nan"))),
         r"T2V2TVisionConfig.temporal_scale_init_value=nan is invalid: must be a finite number"),
        (dict(initializer_range="0.02"), r"T2V2TConfig.initializer_range='0.02' is invalid: must be a number > 0"),
        (dict(temp="0.07"), r"T2V2TConfig.temp='0.07' is invalid"),
        (dict(temp_max=-1.0), r"T2V2TConfig.temp_max=-1.0 is invalid"),
        (dict(vtc_loss_weight=None), r"T2V2TConfig.vtc_loss_weight=None is invalid: must be a number >= 0"),
        (dict(text_config=dict(pad_token_id="0")), r"T2V2TTextConfig.pad_token_id='0' is invalid: must be None or "
                                                   r"an integer in \[0, vocab_size=64\)"),
        (dict(vision_config=dict(num_frames=True)), r"T2V2TVisionConfig.num_frames=True is invalid: must be a "
                                                    r"positive integer"),
        (dict(vision_config=dict(use_temporal_attention="false")),
         r"T2V2TVisionConfig.use_temporal_attention='false' is invalid: must be True or False"),
        (dict(gather_distributed=1), r"T2V2TConfig.gather_distributed=1 is invalid: must be True or False"),
    ],
)
def test_bad_values_raise_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_dual_encoder_may_use_every_text_layer():
    assert tiny_config(fusion_mode="none", fusion_layer=3).fusion_layer == 3
    assert tiny_config(fusion_mode="v2t", num_t2v_layers=0).num_t2v_layers == 0  # unused outside T2V2T modes


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: XPoolConfig(initializer_range=0.0), r"XPoolConfig.initializer_range=0.0 is invalid: must be a number > 0"),
        (lambda: XPoolConfig(layer_norm_eps="1e-5"), r"XPoolConfig.layer_norm_eps='1e-5' is invalid"),
        (lambda: CRETConfig(initializer_range=-1.0), r"CRETConfig.initializer_range=-1.0 is invalid"),
        (lambda: CRETConfig(layer_norm_eps=0), r"CRETConfig.layer_norm_eps=0 is invalid: must be a number > 0"),
        (lambda: XPoolConfig(gather_distributed="no"), r"XPoolConfig.gather_distributed='no' is invalid"),
        (lambda: XPoolConfig(text_pooling="eos"), r"XPoolConfig.text_pooling='eos' is invalid"),
        (lambda: CRETConfig(text_pooling="max"), r"CRETConfig.text_pooling='max' is invalid"),
        (lambda: CRETConfig(temp_min=0.6), r"CRETConfig.temp_min=0.6 is invalid: must be a number in \(0, temp_max=0.5\)"),
    ],
)
def test_baseline_configs_validate_the_remaining_fields(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class _Fields:
    """A stand-in config: the validator only reads attributes and the class name."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.mark.parametrize(
    "value, check, rule",
    [
        (0, lambda c: c.positive_int("x"), "must be a positive integer"),
        (5, lambda c: c.integer("x", 0, "limit", high_open=True), "must be an integer in [0, limit=3)"),
        (1, lambda c: c.integer("x", 2), "must be an integer >= 2"),
        (5, lambda c: c.number("x", 0, 1, low_open=True, high_open=True), "must be a number in (0, 1)"),
        (5, lambda c: c.number("x", high="limit", high_open=True), "must be a number < limit=3"),
        (5, lambda c: c.probability("x"), "must be a number in [0, 1)"),
        (-5, lambda c: c.number("x", 0, low_open=True, optional=True, why="(here: why)"),
         "must be None or a number > 0 (here: why)"),
        (5, lambda c: c.one_of("x", ("a", "b")), "must be one of ('a', 'b')"),
        (5, lambda c: c.divides("x", "limit"), "limit (3) must be divisible by x"),
    ],
)
def test_validator_states_the_rule_it_checks(value, check, rule):
    with pytest.raises(ValueError) as error:
        check(ConfigValidator(_Fields(x=value, limit=3)))
    assert str(error.value) == f"_Fields.x={value} is invalid: {rule}."


def test_validator_accepts_the_boundaries_it_states():
    check = ConfigValidator(_Fields(x=0, limit=3, nothing=None, rate=0.0))
    check.integer("x", 0, "limit", high_open=True)
    check.number("x", high=0)
    check.probability("rate")
    check.integer("nothing", 0, optional=True)
    for bad in (3, -1, 2.0, True, None):
        with pytest.raises(ValueError, match=r"_Fields.x="):
            ConfigValidator(_Fields(x=bad, limit=3)).integer("x", 0, "limit", high_open=True)
