"""VindLU -> T2V2T conversion (modeling_t2v2t.conversion.vindlu, training/convert_vindlu_checkpoint.py).

The test writes a checkpoint with VindLU's key names (github.com/klauscc/VindLU: transformers-4 BEiT with a
"timesformer" temporal block built on nn.MultiheadAttention, ALBEF-style BERT with `crossattention`) from a tiny
T2V2T model, using its own name table, not the library's, then checks the converted model against that source."""

import json
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from test_auto_and_hub_code import tiny_videos
from tiny_models import tiny_config, tiny_inputs, tiny_tokenizer
from transformers import AutoProcessor

from modeling_t2v2t import T2V2TForPreTraining, T2V2TModel
from modeling_t2v2t.conversion.vindlu import convert_vindlu_checkpoint, load_vindlu_state_dict
from training import convert_vindlu_checkpoint as convert_script

# The tiny vocabulary is too small for bert-base-uncased's special ids, which are not stored in the weights.
TOKEN_IDS = {"text_config": {"cls_token_id": 2, "sep_token_id": 3, "mask_token_id": 4}}
# Our vision names -> VindLU's (transformers 4 BEiT), per layer.
VISION_LAYER_NAMES = {
    "attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
    "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
    "layernorm_before": "layernorm_before", "layernorm_after": "layernorm_after",
}


def randomised(model):
    """Every parameter moved off its initial value, temporal gates opened, so each weight shows in the outputs."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
            if name.endswith("temporal_attention.gate"):
                parameter.fill_(0.7)
    return model.eval()


def vindlu_state_dict(model, text_prefix="text_encoder.bert.", mlm=True):
    """`model`'s weights under VindLU's names, plus VindLU's buffers, aliases and unused weights."""
    generator = torch.Generator().manual_seed(1)
    state = model.state_dict()
    base = model.t2v2t.state_dict() if isinstance(model, T2V2TForPreTraining) else state
    config = model.config.vision_config
    out = {
        "vision_encoder.embeddings.cls_token": base["vision_model.embeddings.cls_token"],
        "vision_encoder.embeddings.temporal_position_embeddings":
            base["vision_model.embeddings.temporal_position_embeddings"],
        "vision_encoder.pooler.layernorm.weight": base["vision_model.pooler.layernorm.weight"],
        "vision_encoder.pooler.layernorm.bias": base["vision_model.pooler.layernorm.bias"],
    }
    for suffix in ("weight", "bias"):
        out[f"vision_encoder.embeddings.patch_embeddings.projection.{suffix}"] = \
            base[f"vision_model.embeddings.patch_embeddings.projection.{suffix}"]
    side = config.image_size // config.patch_size
    for i in range(config.num_hidden_layers):
        ours, theirs = f"vision_model.layers.{i}.", f"vision_encoder.encoder.layer.{i}."
        for our_name, their_name in VISION_LAYER_NAMES.items():
            for suffix in ("weight", "bias"):
                if f"{ours}{our_name}.{suffix}" in base:
                    out[f"{theirs}{their_name}.{suffix}"] = base[f"{ours}{our_name}.{suffix}"]
        out[theirs + "lambda_1"], out[theirs + "lambda_2"] = base[ours + "lambda_1"], base[ours + "lambda_2"]
        bias = theirs + "attention.attention.relative_position_bias."
        out[bias + "relative_position_bias_table"] = base[ours + "relative_position_bias.relative_position_bias_table"]
        out[bias + "relative_position_index"] = torch.zeros((side * side + 1,) * 2, dtype=torch.long)  # a buffer
        # VindLU's timesformer block: LayerNorm, nn.MultiheadAttention (fused in_proj), a scalar scale, and a Linear
        # it never uses. Its key bias is random here: VindLU has one, T2V2T drops it.
        temporal = ours + "temporal_attention."
        out[theirs + "temp_model.norm.weight"] = base[temporal + "norm.weight"]
        out[theirs + "temp_model.norm.bias"] = base[temporal + "norm.bias"]
        out[theirs + "temp_model.temporal_attn.in_proj_weight"] = torch.cat(
            [base[f"{temporal}attention.{p}_proj.weight"] for p in "qkv"])
        out[theirs + "temp_model.temporal_attn.in_proj_bias"] = torch.cat(
            [base[temporal + "attention.q_proj.bias"], torch.randn(config.hidden_size, generator=generator),
             base[temporal + "attention.v_proj.bias"]])
        out[theirs + "temp_model.temporal_attn.out_proj.weight"] = base[temporal + "attention.o_proj.weight"]
        out[theirs + "temp_model.temporal_attn.out_proj.bias"] = base[temporal + "attention.o_proj.bias"]
        out[theirs + "temp_model.scale"] = base[temporal + "gate"]
        out[theirs + "temp_model.linear.weight"] = torch.randn(config.hidden_size, config.hidden_size)
        out[theirs + "temp_model.linear.bias"] = torch.randn(config.hidden_size)
    for name in ("vision_layernorm", "vision_proj", "text_proj", "itm_head"):
        for suffix in ("weight", "bias"):
            if f"{name}.{suffix}" in base:
                out[f"{name}.{suffix}"] = base[f"{name}.{suffix}"]
    out["temp"] = base["temp"]
    for key, value in base.items():  # BERT keeps its names under VindLU's prefix
        if key.startswith("text_model."):
            out[text_prefix + key[len("text_model."):]] = value
    out[text_prefix + "embeddings.position_ids"] = torch.arange(model.config.text_config.max_position_embeddings)[None]
    if mlm:
        for key, value in state.items():
            if key.startswith("cls.predictions."):
                out["text_encoder." + key] = value
        out["text_encoder.cls.predictions.decoder.bias"] = state["cls.predictions.bias"]  # VindLU's alias
    return {key: value.clone() for key, value in out.items()}


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return randomised(T2V2TForPreTraining(tiny_config(bypass_mode="self")))


def save_checkpoint(path, state, **extra):
    torch.save({"model": state, "epoch": 9, **extra}, path)
    return path


def test_every_vindlu_weight_lands_on_its_t2v2t_weight(source, tmp_path):
    state = vindlu_state_dict(source)
    path = save_checkpoint(tmp_path / "ckpt_best.pth", state)
    conversion = convert_vindlu_checkpoint(path, config_overrides=TOKEN_IDS)
    model = conversion.model
    assert type(model) is T2V2TForPreTraining  # the checkpoint has an MLM head
    for name in ("fusion_mode", "fusion_layer", "embed_dim"):
        assert getattr(model.config, name) == getattr(source.config, name)
    for part in ("vision_config", "text_config"):
        ours, theirs = getattr(model.config, part).to_dict(), getattr(source.config, part).to_dict()
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
                     "patch_size", "num_frames", "vocab_size", "max_position_embeddings", "key_bias",
                     "use_mean_pooling", "use_relative_position_bias", "use_shared_relative_position_bias"):
            assert ours.get(name) == theirs.get(name), (part, name)

    # Every VindLU weight is accounted for, and each converted tensor equals its source (or its q/k/v third).
    assert set(conversion.key_map) | set(conversion.unexpected_keys) | set(conversion.ignored_keys) == set(state)
    converted = model.state_dict()
    for vindlu_key, our_keys in conversion.key_map.items():
        fused = vindlu_key.endswith(("in_proj_weight", "in_proj_bias"))
        for our_key in our_keys:
            # a fused q/k/v tensor: the third named by the projection (…attention.q_proj.weight -> q)
            expected = state[vindlu_key].chunk(3)["qkv".index(our_key.split("_proj")[0][-1])] if fused \
                else state[vindlu_key]
            assert torch.equal(converted[our_key], expected), (vindlu_key, our_key)
    source_state = source.state_dict()
    new = sorted(key for key in converted if ".t2v_layers." in key)
    for key, value in converted.items():
        if key not in new:
            assert torch.equal(value, source_state[key]), key

    assert new and conversion.missing_keys == new  # the T2V2T fusion layers, and nothing else, are new
    assert conversion.unexpected_keys == sorted(k for k in state if ".temp_model.linear." in k)
    assert conversion.ignored_keys == sorted(k for k in state if k.endswith(("relative_position_index",
                                                                             "position_ids", "decoder.bias")))
    assert any("key biases" in note for note in conversion.notes)

    inputs = tiny_inputs(source.config)
    with torch.no_grad():
        for encoder in ("get_text_features", "get_video_features"):
            args = ({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
                    if encoder == "get_text_features" else {"pixel_values_videos": inputs["pixel_values_videos"]})
            torch.testing.assert_close(getattr(model.t2v2t, encoder)(**args), getattr(source.t2v2t, encoder)(**args),
                                       rtol=0, atol=0)


def test_temporal_attention_computes_vindlus_multihead_attention_block(source, tmp_path):
    state = vindlu_state_dict(source)
    model = convert_vindlu_checkpoint(save_checkpoint(tmp_path / "c.pth", state),
                                      config_overrides=TOKEN_IDS).model.eval()
    width, heads = source.config.vision_config.hidden_size, source.config.vision_config.num_attention_heads
    prefix = "vision_encoder.encoder.layer.1.temp_model."
    # VindLU: x + scale * MHA(norm(x)) over time, as "(b t l c) -> t (b l) c", with nn.MultiheadAttention's weights.
    attention = torch.nn.MultiheadAttention(width, heads).eval()
    attention.load_state_dict({"in_proj_weight": state[prefix + "temporal_attn.in_proj_weight"],
                               "in_proj_bias": state[prefix + "temporal_attn.in_proj_bias"],
                               "out_proj.weight": state[prefix + "temporal_attn.out_proj.weight"],
                               "out_proj.bias": state[prefix + "temporal_attn.out_proj.bias"]})
    x = torch.randn(2, 3, 5, width)  # (B, T, L, D)
    with torch.no_grad():
        normed = F.layer_norm(x, (width,), state[prefix + "norm.weight"], state[prefix + "norm.bias"], eps=1e-12)
        over_time = normed.permute(1, 0, 2, 3).reshape(3, 2 * 5, width)
        update = attention(over_time, over_time, over_time)[0].reshape(3, 2, 5, width).permute(1, 0, 2, 3)
        vindlu = x + state[prefix + "scale"] * update
        ours = model.t2v2t.vision_model.layers[1].temporal_attention(x)
    torch.testing.assert_close(ours, vindlu, rtol=1e-5, atol=1e-5)


def test_v2t_conversion_of_a_finetuned_checkpoint_is_complete(source, tmp_path):
    # Retrieval fine-tuning saves BertModel (text_encoder.*, no `bert.`) and no MLM head.
    state = vindlu_state_dict(source, text_prefix="text_encoder.", mlm=False)
    conversion = convert_vindlu_checkpoint(save_checkpoint(tmp_path / "ft.pth", state),
                                           config_overrides={"fusion_mode": "v2t", **TOKEN_IDS})
    model = conversion.model
    assert type(model) is T2V2TModel and model.config.fusion_mode == "v2t"
    assert conversion.missing_keys == []  # VindLU's architecture: nothing left to initialise

    reference = T2V2TModel(tiny_config(fusion_mode="v2t")).eval()  # VindLU's model with the source's weights
    result = reference.load_state_dict(source.t2v2t.state_dict(), strict=False)
    assert result.missing_keys == [] and all(key.startswith("t2v_layers.") for key in result.unexpected_keys)
    inputs = tiny_inputs(source.config)
    with torch.no_grad():
        ours = model.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"])
        theirs = reference.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"])
    torch.testing.assert_close(ours.vtm_logits, theirs.vtm_logits, rtol=0, atol=0)


def test_fused_qkv_with_separate_query_and_value_biases(source, tmp_path):
    # BEiT's original (unilm/timm) layout: one qkv weight, q_bias and v_bias, no key bias.
    state = vindlu_state_dict(source)
    for i in range(source.config.vision_config.num_hidden_layers):
        prefix = f"vision_encoder.encoder.layer.{i}.attention.attention."
        state[prefix + "qkv.weight"] = torch.cat([state.pop(prefix + f"{name}.weight")
                                                  for name in ("query", "key", "value")])
        state[prefix + "q_bias"] = state.pop(prefix + "query.bias")
        state[prefix + "v_bias"] = state.pop(prefix + "value.bias")
    conversion = convert_vindlu_checkpoint(save_checkpoint(tmp_path / "qkv.pth", state), config_overrides=TOKEN_IDS)
    assert conversion.key_map["vision_encoder.encoder.layer.0.attention.attention.qkv.weight"] == [
        f"t2v2t.vision_model.layers.0.attention.{name}_proj.weight" for name in "qkv"]
    clips = tiny_inputs(source.config)["pixel_values_videos"]
    with torch.no_grad():
        torch.testing.assert_close(conversion.model.t2v2t.get_video_features(clips),
                                   source.t2v2t.get_video_features(clips), rtol=0, atol=0)


def test_embeddings_follow_the_configured_frames_and_image_size(source, tmp_path):
    state = vindlu_state_dict(source)
    path = save_checkpoint(tmp_path / "c.pth", state)

    more_frames = convert_vindlu_checkpoint(path, config_overrides={**TOKEN_IDS, "vision_config": {"num_frames": 5}})
    key = "t2v2t.vision_model.embeddings.temporal_position_embeddings"
    assert {k: v[:2] for k, v in more_frames.resized_keys.items()} == {
        key[len("t2v2t."):]: ((1, 3, 1, 32), (1, 5, 1, 32))}
    # VindLU's start point: the checkpoint's rows, then zero rows (tests/test_fidelity_conversion.py); so on clips
    # the checkpoint's table covers, the converted 5-frame model equals the 3-frame one.
    clips = tiny_inputs(source.config, frames=3)["pixel_values_videos"]
    with torch.no_grad():
        torch.testing.assert_close(more_frames.model.t2v2t.get_video_features(clips),
                                   source.t2v2t.get_video_features(clips), rtol=1e-6, atol=1e-6)

    bigger = convert_vindlu_checkpoint(path, config_overrides={**TOKEN_IDS, "vision_config": {"image_size": 48}})
    table = bigger.model.t2v2t.vision_model.layers[0].relative_position_bias.relative_position_bias_table
    old = state["vision_encoder.encoder.layer.0.attention.attention.relative_position_bias."
                "relative_position_bias_table"]
    assert table.shape == (11 * 11 + 3, 4) and old.shape == (7 * 7 + 3, 4)
    assert torch.equal(table[-3:], old[-3:])  # the [CLS] entries are not on the grid
    torch.testing.assert_close(table[5 * 11 + 5], old[3 * 7 + 3])  # offset (0, 0) stays at the centre
    assert len(bigger.resized_keys) == source.config.vision_config.num_hidden_layers
    with torch.no_grad():
        features = bigger.model.t2v2t.get_video_features(torch.randn(1, 3, 3, 48, 48))
    assert features.shape == (1, 16) and torch.isfinite(features).all()


class _EasyDict(dict):
    """Like VindLU's utils.easydict.EasyDict: a dict whose items are attributes too (pickled with both)."""

    def __init__(self, values=None):
        super().__init__()
        for key, value in (values or {}).items():
            setattr(self, key, value)

    def __setattr__(self, name, value):
        value = _EasyDict(value) if isinstance(value, dict) and not isinstance(value, _EasyDict) else value
        super().__setattr__(name, value)
        super().__setitem__(name, value)


def test_script_converts_a_checkpoint_with_vindlus_config_object(source, tmp_path, monkeypatch):
    # VindLU saves its EasyDict config beside the weights; the class must not be needed to read the weights.
    module, package = types.ModuleType("utils.easydict"), types.ModuleType("utils")
    _EasyDict.__module__, _EasyDict.__qualname__ = "utils.easydict", "EasyDict"
    module.EasyDict, package.easydict = _EasyDict, module
    monkeypatch.setitem(sys.modules, "utils", package)
    monkeypatch.setitem(sys.modules, "utils.easydict", module)
    config = _EasyDict({"model": {"embed_dim": 16, "text_encoder": {"fusion_layer": 1}}, "num_frames": 3})
    path = save_checkpoint(tmp_path / "ckpt_best.pth", vindlu_state_dict(source), config=config,
                           optimizer={"state": {}, "param_groups": [{"lr": 1e-4}]})
    monkeypatch.delitem(sys.modules, "utils.easydict")
    monkeypatch.delitem(sys.modules, "utils")

    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"bypass_mode": "null", **TOKEN_IDS}))
    script = convert_script
    tiny_tokenizer(tmp_path / "tok").save_pretrained(tmp_path / "tok")
    out = tmp_path / "t2v2t"
    conversion = script.main([str(path), str(out), "--config", str(overrides), "--tokenizer", str(tmp_path / "tok"),
                              "--max-length", "12"])
    assert conversion.model.config.bypass_mode == "null"
    assert {"model.safetensors", "config.json", "processor_config.json", "conversion_report.json",
            "modeling_t2v2t.py"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["missing_keys"] == conversion.missing_keys and report["missing_keys"]

    reloaded = T2V2TModel.from_pretrained(out).eval()  # the base model out of the pretraining checkpoint
    processor = AutoProcessor.from_pretrained(out)
    batch = processor(text=["a red square moves left"], videos=tiny_videos(1))
    reloaded_state, source_state = reloaded.state_dict(), source.t2v2t.state_dict()
    assert all(torch.equal(value, source_state[key]) for key, value in reloaded_state.items()
               if not key.startswith("t2v_layers."))
    # Same weights, but loaded ones sit at other addresses; CPU kernels may then round the last bit differently.
    with torch.no_grad():
        torch.testing.assert_close(reloaded.get_video_features(batch["pixel_values_videos"]),
                                   source.t2v2t.get_video_features(batch["pixel_values_videos"]),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(reloaded.get_text_features(batch["input_ids"], batch["attention_mask"]),
                                   source.t2v2t.get_text_features(batch["input_ids"], batch["attention_mask"]),
                                   rtol=1e-5, atol=1e-6)


def test_bad_or_foreign_files_fail_naming_the_file(source, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent.pth")):
        load_vindlu_state_dict(tmp_path / "absent.pth")
    corrupted = tmp_path / "corrupted.pth"
    corrupted.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(ValueError, match=rf"{corrupted} could not be read as a weights-only torch checkpoint"):
        load_vindlu_state_dict(corrupted)
    truncated = tmp_path / "truncated.pth"
    save_checkpoint(truncated, vindlu_state_dict(source))
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(ValueError, match=str(truncated)):
        load_vindlu_state_dict(truncated)

    no_model = tmp_path / "no_model.pth"
    torch.save({"state_dict": {"x": torch.ones(1)}, "epoch": 1}, no_model)
    with pytest.raises(ValueError, match=rf"{no_model} has no 'model' entry"):
        load_vindlu_state_dict(no_model)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"encoder.layer.0.weight": torch.ones(2)}}, foreign)
    with pytest.raises(ValueError, match=rf"{foreign} does not look like a VindLU checkpoint"):
        load_vindlu_state_dict(foreign)

    state = vindlu_state_dict(source)
    state["vision_encoder.encoder.layer.0.temp_model.conv.weight"] = torch.ones(1)  # VindLU's ST-Adapter block
    with pytest.raises(ValueError, match=r"temporal block other than .*temp_model\.conv\.weight"):
        convert_vindlu_checkpoint(save_checkpoint(tmp_path / "adapter.pth", state), config_overrides=TOKEN_IDS)
    with pytest.raises(ValueError, match=r"cross-attend to video from layer 1 .*config.fusion_layer=2"):
        convert_vindlu_checkpoint(save_checkpoint(tmp_path / "c.pth", vindlu_state_dict(source)),
                                  config_overrides={"fusion_layer": 2, **TOKEN_IDS})
    with pytest.raises(ValueError, match=r"vision_proj\.weight has shape \(16, 32\) but .* needs \(8, 32\)"):
        convert_vindlu_checkpoint(tmp_path / "c.pth", config_overrides={"embed_dim": 8, **TOKEN_IDS})
