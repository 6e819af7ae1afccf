"""T2V2TModel / T2V2TForPreTraining: shapes per fusion mode, losses and gradients, caching contract, save/load,
gradient checkpointing, temporal interpolation, input errors."""

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import T2V2TForPreTraining, T2V2TModel
from modeling_t2v2t.losses_t2v2t import vtc_loss
from modeling_t2v2t.modeling_video_encoder import pool_frame_embeds

def config_fields(config) -> dict:
    """The config as a dict without loading bookkeeping (`_name_or_path`, the recorded dtype)."""
    data = config.to_dict()
    for key in ("_name_or_path", "dtype", "transformers_version"):
        data.pop(key, None)
    for sub in ("text_config", "vision_config"):
        data[sub].pop("dtype", None)
    return data


FUSION_MODES = ["t2v2t", "naive_t2v2t", "v2t", "none"]
# Every mode with a joint encoder, and both bypass variants of T2V2T.
JOINT_VARIANTS = [("t2v2t", "self"), ("t2v2t", "null"), ("naive_t2v2t", "self"), ("v2t", "self")]


def test_mode_shapes_without_loss():
    for mode in FUSION_MODES:
        config = tiny_config(fusion_mode=mode)
        model = T2V2TModel(config).eval()
        inputs = tiny_inputs(config, batch=3)
        inputs.pop("video_ids")
        with torch.no_grad():
            out = model(**inputs)
        assert out.loss is None
        assert out.logits_per_text.shape == (3, 3)
        assert torch.equal(out.logits_per_video, out.logits_per_text.T)
        assert out.text_embeds.shape == out.video_embeds.shape == (3, config.embed_dim)
        assert out.text_last_hidden_state.shape == (3, 7, 32)
        assert out.vision_last_hidden_state.shape == (3, 3, 1 + config.vision_config.num_patches, 32)
        if mode == "none":
            assert out.vtm_logits is None
            assert not hasattr(model, "itm_head")
            assert len(model.text_model.encoder.layer) == config.fusion_layer
        else:
            assert out.vtm_logits.shape == (3, 2)
            assert (model.t2v_layers is not None) == (mode in ("t2v2t", "naive_t2v2t"))


@pytest.mark.parametrize("mode,bypass", JOINT_VARIANTS + [("none", "self")])
def test_losses_finite_and_every_parameter_gets_a_gradient(mode, bypass):
    # Gates start at 0 in the default config, which (correctly) blocks gradients to the temporal attention
    # weights on the first step; non-zero gates here let the test see every parameter.
    config = tiny_config(fusion_mode=mode, bypass_mode=bypass, vision_config=dict(temporal_scale_init_value=0.1))
    model = T2V2TModel(config).train()
    out = model(**tiny_inputs(config), return_loss=True)
    assert torch.isfinite(out.loss) and torch.isfinite(out.loss_vtc)
    if mode == "none":
        assert out.loss_vtm is None
        assert torch.allclose(out.loss, out.loss_vtc)
    else:
        assert torch.isfinite(out.loss_vtm)
        assert torch.allclose(out.loss, out.loss_vtc + out.loss_vtm)
    out.loss.backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


@pytest.mark.parametrize("mode,bypass", JOINT_VARIANTS)
def test_pretraining_losses_and_gradients(mode, bypass):
    config = tiny_config(fusion_mode=mode, bypass_mode=bypass, mlm_probability=0.5,
                         vision_config=dict(temporal_scale_init_value=0.1))
    model = T2V2TForPreTraining(config).train()
    torch.manual_seed(0)
    out = model(**tiny_inputs(config), return_loss=True)
    assert list(out.keys())[:4] == ["loss", "loss_vtc", "loss_vtm", "loss_mlm"]
    for term in (out.loss_vtc, out.loss_vtm, out.loss_mlm):
        assert torch.isfinite(term)
    assert torch.allclose(out.loss, out.loss_vtc + out.loss_vtm + out.loss_mlm)
    out.loss.backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_pretraining_ties_mlm_decoder_to_word_embeddings_and_rejects_dual_encoder():
    model = T2V2TForPreTraining(tiny_config())
    assert model.cls.predictions.decoder.weight is model.t2v2t.text_model.embeddings.word_embeddings.weight
    with pytest.raises(ValueError, match="fusion_mode='none'"):
        T2V2TForPreTraining(tiny_config(fusion_mode="none"))


def test_pretraining_accepts_collator_masking():
    config = tiny_config()
    model = T2V2TForPreTraining(config).eval()
    inputs = tiny_inputs(config)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 2] = inputs["input_ids"][:, 2]
    masked = inputs["input_ids"].clone()
    masked[:, 2] = config.text_config.mask_token_id
    torch.manual_seed(0)
    out = model(**inputs, mlm_input_ids=masked, mlm_labels=labels, return_loss=True)
    assert torch.isfinite(out.loss_mlm) and out.loss_mlm > 0
    with pytest.raises(ValueError, match="mlm_input_ids"):
        model(**inputs, mlm_labels=labels, return_loss=True)


def test_features_and_pair_scores_match_forward():
    config = tiny_config()
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config)
    with torch.no_grad():
        out = model(**inputs)
        text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        video = model.get_video_features(inputs["pixel_values_videos"])
        # Search with the features reproduces the model's own VTC logits.
        torch.testing.assert_close(text @ video.T / model.temperature, out.logits_per_text)
        assert torch.allclose(text.norm(dim=-1), torch.ones(4))
        assert bool((video.norm(dim=-1) <= 1 + 1e-6).all())
        # Reranking from cached encodings (each video encoded once) equals scoring the raw pairs.
        text_encoding = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        video_encoding = model.encode_video(inputs["pixel_values_videos"])
        cached = model.score_pairs(text_encoding=text_encoding, video_encoding=video_encoding)
        raw = model.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"])
    torch.testing.assert_close(cached.vtm_logits, out.vtm_logits)
    # The default rerank score: VTM log-odds plus the pair's VTC logit; "vtm" is VindLU's match logit alone.
    vtc_logits = torch.diagonal(out.logits_per_text)
    torch.testing.assert_close(raw.scores, out.vtm_logits[:, 1] - out.vtm_logits[:, 0] + vtc_logits)
    model.config.rerank_score = "vtm"
    with torch.no_grad():
        torch.testing.assert_close(model.score_pairs(text_encoding=text_encoding, video_encoding=video_encoding).scores,
                                   out.vtm_logits[:, 1])
    model.config.rerank_score = "vtm+vtc"
    with pytest.raises(ValueError, match="needs the videos' `video_embeds`"):
        model.score_pairs(text_encoding=text_encoding,
                          video_encoding=type(video_encoding)(video_tokens=video_encoding.video_tokens))
    # One query against every video, from the cached encodings.
    with torch.no_grad():
        query_vs_all = model.score_pairs(text_encoding=text_encoding.select(torch.zeros(4, dtype=torch.long)),
                                         video_encoding=video_encoding).scores
        one_by_one = [model.score_pairs(inputs["input_ids"][:1], inputs["attention_mask"][:1],
                                        inputs["pixel_values_videos"][v:v + 1]).scores for v in range(4)]
    torch.testing.assert_close(query_vs_all, torch.cat(one_by_one))


def test_frame_pooling_by_hand():
    """Two orthogonal unit frames and the text halfway between them: VindLU's mean of per-frame cosines gives
    (0.7071 + 0.7071) / 2; CLIP4Clip's normalised mean gives the cosine with the mean direction, 1."""
    frames = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1 video, 2 frames, 2 dims)
    text = torch.tensor([[0.5**0.5, 0.5**0.5]])
    mean = pool_frame_embeds(frames, "mean")
    torch.testing.assert_close(mean, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(text @ mean.T, (text @ frames[0].T).mean(dim=1, keepdim=True))  # 0.7071
    normalized = pool_frame_embeds(frames, "normalized_mean")
    torch.testing.assert_close(normalized, torch.tensor([[0.5**0.5, 0.5**0.5]]))
    torch.testing.assert_close(text @ normalized.T, torch.ones(1, 1))
    with pytest.raises(ValueError, match="video pooling 'max' is invalid"):
        pool_frame_embeds(frames, "max")


def test_normalized_mean_video_pooling_scores_cosines_everywhere():
    """`video_pooling="normalized_mean"` changes only the video embedding: unit norm, the same frame embeddings,
    and the VTC logits, the loss and the reranked "vtm+vtc" score all read the normalised embedding."""
    torch.manual_seed(0)
    vindlu = T2V2TModel(tiny_config()).eval()
    meanp = T2V2TModel(tiny_config(video_pooling="normalized_mean")).eval()
    meanp.load_state_dict(vindlu.state_dict())
    inputs = tiny_inputs(vindlu.config)
    with torch.no_grad():
        frames = vindlu.encode_video(inputs["pixel_values_videos"]).frame_embeds
        torch.testing.assert_close(meanp.encode_video(inputs["pixel_values_videos"]).frame_embeds, frames)
        video = meanp.get_video_features(inputs["pixel_values_videos"])
        torch.testing.assert_close(video, torch.nn.functional.normalize(frames.mean(dim=1), dim=-1))
        assert not torch.allclose(video, vindlu.get_video_features(inputs["pixel_values_videos"]))
        out = meanp(**inputs, return_loss=True)
        text = meanp.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        torch.testing.assert_close(out.logits_per_text, text @ video.T / meanp.temperature)
        torch.testing.assert_close(out.loss_vtc, vtc_loss(text, video, meanp.temperature, inputs["video_ids"]))
        scores = meanp.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"])
    torch.testing.assert_close(scores.scores, out.vtm_logits[:, 1] - out.vtm_logits[:, 0]
                               + torch.diagonal(out.logits_per_text))


def test_score_pairs_reports_bypass_probabilities():
    config = tiny_config(num_t2v_layers=2)
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config, batch=2)
    with torch.no_grad():
        scores = model.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"],
                                   output_bypass_probs=True)
    tokens = config.vision_config.num_frames * (1 + config.vision_config.num_patches)
    assert len(scores.bypass_probs) == 2
    assert scores.bypass_probs[0].shape == (2, config.vision_config.num_attention_heads, tokens)
    assert bool(((scores.bypass_probs[0] > 0) & (scores.bypass_probs[0] < 1)).all())


def test_dual_encoder_has_no_joint_encoder_api():
    model = T2V2TModel(tiny_config(fusion_mode="none"))
    inputs = tiny_inputs(model.config)
    with pytest.raises(ValueError, match="dual encoder"):
        model.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"])


def test_model_vtc_loss_uses_video_ids_as_positives():
    config = tiny_config(fusion_mode="none")
    model = T2V2TModel(config).eval()
    inputs = tiny_inputs(config)  # video_ids [0, 0, 2, 3]: captions 0 and 1 are both positives of videos 0 and 1
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
        expected = vtc_loss(out.text_embeds, out.video_embeds, model.temperature, inputs["video_ids"])
        single = vtc_loss(out.text_embeds, out.video_embeds, model.temperature, torch.arange(4))
    torch.testing.assert_close(out.loss_vtc, expected)
    assert not torch.allclose(out.loss_vtc, single)


@pytest.mark.parametrize("start,bound", [(0.7, 0.5), (1e-4, 1e-3)])
def test_vtc_temperature_is_clamped_in_place_and_keeps_its_gradient(start, bound):
    """VindLU's `clip_contrastive_temperature`: the parameter is clamped in place, then used with its gradient."""
    config = tiny_config(fusion_mode="none")
    model = T2V2TModel(config).train()
    with torch.no_grad():
        model.temp.fill_(start)
    out = model(**tiny_inputs(config), return_loss=True)
    out.loss_vtc.backward()
    assert model.temp.item() == pytest.approx(bound)
    assert model.temp.grad is not None and model.temp.grad.item() != 0.0  # a clamp in the graph would give 0
    model.eval()
    with torch.no_grad():
        model.temp.fill_(start)
        assert model.temperature.item() == pytest.approx(bound)  # read through a clamp, parameter untouched
    assert model.temp.item() == pytest.approx(start)


def test_video_ids_errors_and_single_video_batches():
    config = tiny_config()
    model = T2V2TModel(config)
    inputs = tiny_inputs(config)
    inputs["video_ids"] = torch.tensor([0.5, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="video_ids must be 4 integers"):
        model(**inputs, return_loss=True)
    inputs["video_ids"] = torch.zeros(4, dtype=torch.long)  # one video: VTM has positive pairs only
    out = model(**inputs, return_loss=True)
    assert torch.isfinite(out.loss_vtm) and out.vtm_logits.shape == (4, 2)


def test_wrong_pixel_shapes_raise_with_sizes():
    config = tiny_config()
    model = T2V2TModel(config)
    inputs = tiny_inputs(config)
    with pytest.raises(ValueError, match=r"\(batch, frames, 3, 32, 32\).*\(4, 3, 3, 16, 16\)"):
        model(**{**inputs, "pixel_values_videos": torch.randn(4, 3, 3, 16, 16)})
    with pytest.raises(ValueError, match="4-d tensor"):
        model(**{**inputs, "pixel_values_videos": torch.randn(4, 3, 32, 32)})
    with pytest.raises(ValueError, match="captions and"):
        model(**{**inputs, "pixel_values_videos": inputs["pixel_values_videos"][:2]}, return_loss=True)


def test_temporal_embedding_is_interpolated_for_other_frame_counts():
    config = tiny_config()
    model = T2V2TModel(config).eval()
    embedding = model.vision_model.embeddings
    with torch.no_grad():
        embedding.temporal_position_embeddings.copy_(torch.arange(3.0).view(1, 3, 1, 1).expand(1, 3, 1, 32))
        resized = embedding.temporal_embedding(6)
        out = model(**{**tiny_inputs(config, frames=6), "video_ids": None})
    assert resized.shape == (1, 6, 1, 32)
    assert torch.equal(embedding.temporal_embedding(3), embedding.temporal_position_embeddings)
    values = resized[0, :, 0, 0]
    assert bool((values[1:] >= values[:-1]).all()) and values[0] == 0 and values[-1] == 2  # monotone, same range
    assert out.vision_last_hidden_state.shape[1] == 6


def test_temporal_gate_zero_makes_frames_independent():
    config = tiny_config()  # default gate 0
    model = T2V2TModel(config).eval()
    pixels = torch.randn(1, 3, 3, 32, 32)
    changed = pixels.clone()
    changed[0, 2] = torch.randn(3, 32, 32)
    with torch.no_grad():
        a = model.vision_model(pixels).last_hidden_state
        b = model.vision_model(changed).last_hidden_state
        for layer in model.vision_model.layers:
            layer.temporal_attention.gate.fill_(0.5)
        c = model.vision_model(changed).last_hidden_state
    torch.testing.assert_close(a[:, :2], b[:, :2])  # frame 2 cannot affect frames 0-1 with the gates closed
    assert not torch.allclose(a[:, :2], c[:, :2])  # ... and does once the gates open


def test_save_load_round_trip(tmp_path):
    for model_class in (T2V2TModel, T2V2TForPreTraining):
        config = tiny_config(bypass_mode="null")
        model = model_class(config).eval()
        inputs = tiny_inputs(config)
        model.save_pretrained(tmp_path / model_class.__name__)
        assert (tmp_path / model_class.__name__ / "model.safetensors").exists()
        reloaded = model_class.from_pretrained(tmp_path / model_class.__name__).eval()
        assert config_fields(reloaded.config) == config_fields(model.config)
        with torch.no_grad():
            before, after = model(**inputs), reloaded(**inputs)
        torch.testing.assert_close(after.logits_per_text, before.logits_per_text, rtol=0, atol=0)
        torch.testing.assert_close(after.vtm_logits, before.vtm_logits, rtol=0, atol=0)


def test_pretrained_checkpoint_loads_into_retrieval_model(tmp_path):
    config = tiny_config()
    pretrained = T2V2TForPreTraining(config).eval()
    pretrained.save_pretrained(tmp_path)
    model = T2V2TModel.from_pretrained(tmp_path).eval()
    inputs = tiny_inputs(config)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).vtm_logits, pretrained(**inputs).vtm_logits)


@pytest.mark.parametrize("model_class", [T2V2TModel, T2V2TForPreTraining])
def test_gradient_checkpointing_leaves_loss_and_gradients_unchanged(model_class):
    config = tiny_config(vision_config=dict(temporal_scale_init_value=0.1, drop_path_rate=0.1),
                         text_config=dict(hidden_dropout_prob=0.1))
    model = model_class(config).train()
    inputs = tiny_inputs(config)

    def loss_and_grads():
        model.zero_grad()
        torch.manual_seed(0)  # same dropout, drop-path, masking and VTM negatives in both runs
        loss = model(**inputs, return_loss=True).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss_plain, grads_plain = loss_and_grads()
    model.activation_checkpointing_enable()
    checkpointed = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    assert len(checkpointed) == 2 + 3 + 1  # vision layers, text layers, text→video layers
    loss_ckpt, grads_ckpt = loss_and_grads()
    torch.testing.assert_close(loss_ckpt, loss_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)


def test_bf16_autocast_and_bf16_weights_train():
    config = tiny_config()
    inputs = tiny_inputs(config)
    model = T2V2TForPreTraining(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**inputs, return_loss=True).loss
    loss.backward()
    assert torch.isfinite(loss) and model.t2v2t.itm_head.weight.grad is not None
    bf16_loss = T2V2TModel(config).to(torch.bfloat16)(**inputs, return_loss=True).loss
    assert torch.isfinite(bf16_loss)


@pytest.mark.parametrize("mode,fusion_layer", [("t2v2t", 2), ("v2t", 1), ("naive_t2v2t", 1)])
def test_cls_only_fusion_equals_the_full_fusion_with_its_gradients(mode, fusion_layer):
    # VTM and reranking read only the fused [CLS]: computing the last fusion layer for that row alone (queries from
    # [CLS], keys/values from every token; with one query row, BertAttentionBlock._attend_one_row moves the key and
    # value projections to the query's side) must give the same [CLS] and the same gradients as the full layer.
    config = tiny_config(fusion_mode=mode, fusion_layer=fusion_layer, num_t2v_layers=2)
    model = T2V2TModel(config).eval()  # no dropout: both computations see the same network
    inputs = tiny_inputs(config)
    text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
    video = model.encode_video(inputs["pixel_values_videos"])
    full, _ = model.fuse(text.text_states, text.attention_mask, video.video_tokens)
    cls, _ = model.fuse(text.text_states, text.attention_mask, video.video_tokens, cls_only=True)
    assert cls.shape == (4, 1, config.text_config.hidden_size)
    torch.testing.assert_close(cls[:, 0], full[:, 0], rtol=1e-5, atol=1e-6)
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads_full = torch.autograd.grad(model.itm_head(full[:, 0])[:, 1].sum(), parameters, allow_unused=True,
                                     retain_graph=True)
    grads_cls = torch.autograd.grad(model.itm_head(cls[:, 0])[:, 1].sum(), parameters, allow_unused=True)
    compared = 0
    for a, b in zip(grads_full, grads_cls):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
            compared += 1
    assert compared > 10
    # The padded caption (row 0) keeps its mask: its [CLS] ignores the padding in both computations.
    assert bool(inputs["attention_mask"][0].eq(0).any())


@pytest.mark.parametrize("mode,bypass,fusion_layer", [("t2v2t", "self", 2), ("t2v2t", "null", 1), ("v2t", "self", 1),
                                                      ("v2t", "self", 2), ("naive_t2v2t", "self", 1)])
def test_indexed_fusion_equals_fusing_the_indexed_inputs(mode, bypass, fusion_layer):
    # VTM's pairs reuse each text and video: fuse(..., text_index, video_index) projects per text / per video and
    # shares the result; it must equal fusing the gathered (text, video) pairs, values and gradients.
    config = tiny_config(fusion_mode=mode, bypass_mode=bypass, fusion_layer=fusion_layer, num_t2v_layers=2)
    model = T2V2TModel(config).eval()  # no dropout: both computations see the same network
    if mode == "t2v2t" and bypass == "null":
        torch.nn.init.normal_(model.t2v_layers[0].cross_attention.null_value)  # zero at init: make it count
    inputs = tiny_inputs(config)
    text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
    video = model.encode_video(inputs["pixel_values_videos"])
    text_index = torch.tensor([0, 1, 2, 3, 0, 2, 3, 1, 0])  # row 0 has padding
    video_index = torch.tensor([0, 1, 2, 3, 2, 0, 1, 3, 3])
    parameters = [p for p in model.parameters() if p.requires_grad]
    for cls_only in (False, True):
        gathered, _ = model.fuse(text.text_states[text_index], text.attention_mask[text_index],
                                 video.video_tokens[video_index], cls_only=cls_only)
        indexed, _ = model.fuse(text.text_states, text.attention_mask, video.video_tokens, cls_only=cls_only,
                                text_index=text_index, video_index=video_index)
        torch.testing.assert_close(indexed, gathered, rtol=1e-5, atol=1e-6)
        loss_gathered = model.itm_head(gathered[:, 0])[:, 1].square().sum()
        loss_indexed = model.itm_head(indexed[:, 0])[:, 1].square().sum()
        grads = torch.autograd.grad(loss_gathered, parameters, allow_unused=True, retain_graph=True)
        for a, b in zip(grads, torch.autograd.grad(loss_indexed, parameters, allow_unused=True, retain_graph=True)):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    # Pairs of different lengths are refused with both counts.
    with pytest.raises(ValueError, match="got 9 texts and 4 videos"):
        model.fuse(text.text_states, text.attention_mask, video.video_tokens, text_index=text_index)
