"""CRET: config validation, one CCM (centres and decoder) shared by both modalities, the GEES loss against its
formula, a Monte-Carlo estimate and InfoNCE at zero variance, the total loss, search embeddings whose dot product is
S = S_g + beta * S_l, retrieval, and save/load in-process and as Hub custom code."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_xpool import CAPTIONS, assert_reloads_exactly_by_model_type, run_in_fresh_process, tiny_processor
from tiny_media import write_grey_video
from tiny_models import tiny_config, tiny_inputs, tiny_tokenizer
from transformers import AutoConfig, BeitConfig, BeitImageProcessor, BeitModel, BertConfig, BertModel

from modeling_t2v2t import CRETConfig, CRETModel, save_hub_folder
from modeling_t2v2t.losses_t2v2t import vtc_loss
from modeling_t2v2t.modeling_cret import CCMDecoderLayer, CrossModalCorrespondence, gees_logits, gees_loss
from modeling_t2v2t.retrieval.retriever import VideoRetriever
from training.arguments import ModelArguments
from training.model_factory import load_model_and_processor


def tiny_cret_config(**overrides) -> CRETConfig:
    """CRET on the same tiny towers as the T2V2T tests (tiny_models.tiny_config)."""
    base = tiny_config()
    fields = dict(text_config=base.text_config.to_dict(), vision_config=base.vision_config.to_dict(), embed_dim=16,
                  num_centers=3, ccm_num_layers=2, ccm_num_attention_heads=2, alpha=0.7, beta=0.5)
    fields.update(overrides)
    return CRETConfig(**fields)


def tiny_cret(seed: int = 0, **overrides) -> CRETModel:
    torch.manual_seed(seed)
    return CRETModel(tiny_cret_config(**overrides)).eval()


# ----- config -----------------------------------------------------------------------------------------------------
def test_defaults_and_round_trip(tmp_path):
    config = CRETConfig()
    assert (config.model_type, config.embed_dim, config.ccm_hidden_size, config.ccm_intermediate_size) == (
        "cret", 256, 256, 1024)
    assert (config.alpha, config.beta, config.temp) == (1.0, 1.0, 0.07) and config.has_joint_encoder is False
    assert config.retrieval_embed_dim == 256 + 8 * 256
    assert isinstance(AutoConfig.for_model("cret"), CRETConfig)
    tiny_cret_config(alpha=0.2).save_pretrained(tmp_path)
    reloaded = CRETConfig.from_pretrained(tmp_path)
    assert (reloaded.alpha, reloaded.num_centers, reloaded.ccm_hidden_size, reloaded.vision_config.num_frames) == (
        0.2, 3, 16, 3)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_centers=0), r"CRETConfig.num_centers=0 is invalid"),
        (dict(ccm_num_layers=-1), r"CRETConfig.ccm_num_layers=-1 is invalid"),
        (dict(ccm_num_attention_heads=5), r"CRETConfig.ccm_num_attention_heads=5 is invalid"),
        (dict(ccm_dropout=1.0), r"CRETConfig.ccm_dropout=1.0 is invalid"),
        (dict(alpha=-0.1), r"CRETConfig.alpha=-0.1 is invalid: must be a number >= 0"),
        (dict(beta=-1.0), r"CRETConfig.beta=-1.0 is invalid"),
        (dict(temp=0.9), r"CRETConfig.temp=0.9 is invalid"),
        (dict(embed_dim=0), r"CRETConfig.embed_dim=0 is invalid"),
        (dict(text_config=dict(num_attention_heads=5)), r"T2V2TTextConfig.num_attention_heads=5"),
    ],
)
def test_bad_values_raise_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_cret_config(**overrides)


# ----- CCM --------------------------------------------------------------------------------------------------------
def test_one_ccm_decodes_both_modalities():
    model = tiny_cret()
    assert sum(isinstance(module, CrossModalCorrespondence) for module in model.modules()) == 1
    assert sum(isinstance(module, CCMDecoderLayer) for module in model.modules()) == model.config.ccm_num_layers
    calls = []
    model.ccm.register_forward_hook(lambda module, args, output: calls.append((module, tuple(output.shape))))
    inputs = tiny_inputs(model.config)
    with torch.no_grad():
        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        video = model.encode_video(inputs["pixel_values_videos"])
    assert [module for module, _ in calls] == [model.ccm, model.ccm]
    assert [shape for _, shape in calls] == [(4, 3, 16), (4, 3, 16)]
    # The same centre queries drive both sides: moving them moves both sides' local embeddings.
    with torch.no_grad():
        model.ccm.centers.add_(torch.randn(model.ccm.centers.shape, generator=torch.Generator().manual_seed(0)))
        moved_text = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).local_embeds
        moved_video = model.encode_video(inputs["pixel_values_videos"]).local_embeds
    assert (moved_text - text.local_embeds).abs().max() > 1e-3
    assert (moved_video - video.local_embeds).abs().max() > 1e-3
    torch.testing.assert_close(text.local_embeds.norm(dim=-1), torch.ones(4, 3))


def test_padding_words_do_not_reach_the_centres():
    model = tiny_cret()
    inputs = tiny_inputs(model.config)  # caption 0 has padding from position 5
    ids = inputs["input_ids"][:1].clone()
    other = ids.clone()
    other[0, 5:] = 7  # different tokens under the padding mask
    mask = inputs["attention_mask"][:1]
    with torch.no_grad():
        first = model.encode_text(ids, mask).local_embeds
        second = model.encode_text(other, mask).local_embeds
    torch.testing.assert_close(first, second)


# ----- GEES -------------------------------------------------------------------------------------------------------
def toy_gaussians(seed=0, max_var=0.05):
    generator = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(4, 5, generator=generator), dim=-1)
    mean = F.normalize(torch.randn(4, 5, generator=generator), dim=-1) * 0.8
    var = torch.rand(4, 5, generator=generator) * max_var
    return text, mean, var


def test_gees_logits_are_the_gaussian_expectation_monte_carlo():
    """log E_{v ~ N(μ, diag σ)} exp(⟨T, v⟩/τ), estimated by sampling, equals the closed form."""
    text, mean, var = toy_gaussians(max_var=0.2)
    temperature = torch.tensor(0.5)
    generator = torch.Generator().manual_seed(1)
    samples = mean[None] + var.sqrt()[None] * torch.randn(200_000, *mean.shape, generator=generator)  # (S, V, E)
    estimate = torch.logsumexp(torch.einsum("te,sve->stv", text, samples) / temperature, dim=0) - math.log(200_000)
    # The sampling error is about 2e-3; the variance term about 0.2, so the tolerance tells them apart.
    torch.testing.assert_close(gees_logits(text, mean, var, temperature), estimate, atol=1e-2, rtol=0)
    without_variance = gees_logits(text, mean, torch.zeros_like(var), temperature)
    assert (without_variance - estimate).abs().min() > 0.05


def test_gees_loss_is_the_formula_in_both_directions_and_infonce_at_zero_variance():
    text, mean, var = toy_gaussians(seed=2)
    temperature = torch.tensor(0.1)
    count = len(text)

    def logit(i, j):  # the paper's exponent, with the temperature on the sampled embedding
        return (text[i] @ mean[j]) / temperature + 0.5 * (text[i] * var[j] * text[i]).sum() / temperature**2

    t2v = -sum(logit(i, i) - torch.logsumexp(torch.stack([logit(i, j) for j in range(count)]), 0)
               for i in range(count)) / count
    v2t = -sum(logit(i, i) - torch.logsumexp(torch.stack([logit(j, i) for j in range(count)]), 0)
               for i in range(count)) / count
    torch.testing.assert_close(gees_loss(text, mean, var, temperature, gather=False), (t2v + v2t) / 2)
    torch.testing.assert_close(gees_loss(text, mean, torch.zeros_like(var), temperature, gather=False),
                               vtc_loss(text, mean, temperature, gather=False))
    # Spread along the caption's direction makes the positive more likely, so the loss drops.
    spread = var.clone()
    spread[torch.arange(count), text.abs().argmax(dim=1)] += 0.2
    assert gees_loss(text, mean, spread, temperature, gather=False) < gees_loss(text, mean, var, temperature,
                                                                                gather=False)


def test_total_loss_is_gees_plus_alpha_ccm_and_every_parameter_gets_a_gradient():
    model = tiny_cret(ccm_dropout=0.0).train()
    inputs = tiny_inputs(model.config)
    out = model(**inputs, return_loss=True)
    torch.testing.assert_close(out.loss, out.loss_gees + 0.7 * out.loss_ccm)
    temp_gees, temp_ccm = model.temperatures
    global_text = out.text_embeds[:, :16]
    frames = out.frame_embeds
    expected_gees = gees_loss(global_text, frames.mean(1), frames.var(1, unbiased=False), temp_gees,
                              inputs["video_ids"], gather=False)
    local_similarity = torch.einsum("tke,vke->tv", out.local_text_embeds, out.local_video_embeds) / 3
    targets = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    logits = local_similarity / temp_ccm
    expected_ccm = (-(logits.log_softmax(1) * targets).sum(1).mean()
                    - (logits.T.log_softmax(1) * targets).sum(1).mean()) / 2
    torch.testing.assert_close(out.loss_gees, expected_gees)
    torch.testing.assert_close(out.loss_ccm, expected_ccm)
    out.loss.backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, missing


# ----- retrieval --------------------------------------------------------------------------------------------------
def test_feature_dot_product_is_global_plus_beta_local_similarity():
    model = tiny_cret()
    inputs = tiny_inputs(model.config, batch=5)
    videos = tiny_inputs(model.config, batch=3, seed=4)["pixel_values_videos"]
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values_videos=videos)
        text_features = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        video_features = model.get_video_features(videos)
    assert text_features.shape == (5, model.config.retrieval_embed_dim) == (5, 16 + 3 * 16)
    global_similarity = F.cosine_similarity(out.text_embeds[:, None, :16], out.frame_embeds.mean(1)[None], dim=-1)
    local_similarity = F.cosine_similarity(out.local_text_embeds[:, None], out.local_video_embeds[None], dim=-1)
    expected = global_similarity + 0.5 * local_similarity.mean(-1)
    torch.testing.assert_close(text_features @ video_features.T, expected)
    torch.testing.assert_close(out.logits_per_text, expected)


def test_retriever_searches_by_the_cret_score(tmp_path):
    model = tiny_cret()
    processor = tiny_processor(tmp_path / "tok", model.config)
    paths = [str(write_grey_video(tmp_path / f"clip{i}.mp4", num_frames=6, step=7 + 6 * i)) for i in range(4)]
    retriever = VideoRetriever(model, processor, show_progress=False)
    retriever.index_videos(paths)
    assert not retriever.can_rerank
    with pytest.raises(ValueError, match="rerank=True needs a joint encoder"):
        retriever.search(CAPTIONS[0], rerank=True)
    with torch.no_grad():
        expected = model(**processor(text=CAPTIONS[:1], videos=paths)).logits_per_text[0]
    hits = retriever.search(CAPTIONS[0], k=4)[0]
    assert [hit.index for hit in hits] == expected.argsort(descending=True).tolist()
    np.testing.assert_allclose([hit.score for hit in hits], expected.sort(descending=True).values, atol=1e-5)
    retriever.save(tmp_path / "index")  # reloads: the index width is retrieval_embed_dim, not embed_dim
    assert len(VideoRetriever.load(tmp_path / "index", model, processor, show_progress=False)) == 4


# ----- save / load ------------------------------------------------------------------------------------------------
def test_save_load_is_exact_and_checkpoints_load_by_model_type(tmp_path):
    assert_reloads_exactly_by_model_type(tiny_cret(seed=5), tmp_path)


def test_starts_from_image_and_text_towers_like_the_training_scripts(tmp_path):
    """BEiT + BERT checkpoints through ModelArguments with `"model_type": "cret"` in the overrides: the towers are
    copied weight for weight (every text layer is text-only, so the text tower computes BertModel)."""
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=48, max_position_embeddings=64)).eval()
    bert.save_pretrained(tmp_path / "bert")
    tiny_tokenizer(tmp_path / "bert").save_pretrained(tmp_path / "bert")
    beit = BeitModel(BeitConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=48, use_mean_pooling=True))
    beit.save_pretrained(tmp_path / "beit")
    BeitImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "beit")
    overrides = {"model_type": "cret", "embed_dim": 16, "num_centers": 2, "ccm_num_attention_heads": 2}
    args = ModelArguments(vision_model_name_or_path=str(tmp_path / "beit"),
                          text_model_name_or_path=str(tmp_path / "bert"), num_frames=2, config_overrides=overrides)
    model, processor = load_model_and_processor(args, pretraining=False)
    assert type(model) is CRETModel and processor.video_processor.num_frames == 2
    state = model.state_dict()
    for prefix, tower in (("text_model.", bert), ("vision_model.", beit)):
        copied = [key for key in tower.state_dict() if prefix + key in state]
        assert len(copied) > 10
        for key in copied:
            assert torch.equal(state[prefix + key], tower.state_dict()[key]), key
    inputs = tiny_inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().text_model.encode_text(inputs["input_ids"], inputs["attention_mask"]),
                                   bert(inputs["input_ids"], inputs["attention_mask"]).last_hidden_state)


@pytest.mark.slow
def test_hub_folder_loads_as_custom_code_in_a_fresh_process(tmp_path):
    model = tiny_cret(seed=6)
    processor = tiny_processor(tmp_path / "tok", model.config)
    folder = save_hub_folder(model, processor, tmp_path / "hub")
    saved = {path.name for path in folder.iterdir()}
    assert {"configuration_cret.py", "modeling_cret.py", "model.safetensors"} <= saved and "__init__.py" not in saved

    videos = [np.random.default_rng(i).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8) for i in range(2)]
    result = run_in_fresh_process(tmp_path, [folder], CAPTIONS[:2], videos)[str(folder)]
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith(".CRETModel")
    batch = processor(text=CAPTIONS[:2], videos=videos)
    with torch.no_grad():
        local = model(**batch)
    torch.testing.assert_close(result["logits_per_text"], local.logits_per_text, rtol=0, atol=0)
    torch.testing.assert_close(result["features"][0], local.text_embeds, rtol=0, atol=0)
    torch.testing.assert_close(result["features"][1], local.video_embeds, rtol=0, atol=0)
