"""X-Pool: config validation, the pooling's identity initialisation and text conditioning, the clamped logit scale,
the multi-positive (and gathered) loss, cached + chunked all-pairs similarity, the CLIP backbone loaded the way the
training scripts load it, retrieval with reranking, and save/load in-process and as Hub custom code."""

import math
import os
import string
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from remote_code import WITHOUT_PACKAGE
from tiny_media import write_grey_video
from tiny_models import tiny_config, tiny_inputs, tiny_tokenizer
from transformers import AutoConfig, AutoModel, AutoProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

import modeling_t2v2t.modeling_xpool as modeling_xpool
from modeling_t2v2t import T2V2TProcessor, T2V2TVideoProcessor, XPoolConfig, XPoolModel, save_hub_folder
from modeling_t2v2t.retrieval.retriever import VideoRetriever
from training.arguments import ModelArguments
from training.model_factory import load_model_and_processor

CAPTIONS = ["a red square moves left", "a blue circle spins", "green square then up"]


def tiny_xpool_config(**overrides) -> XPoolConfig:
    """X-Pool on the same tiny towers as the T2V2T tests (tiny_models.tiny_config)."""
    base = tiny_config()
    fields = dict(text_config=base.text_config.to_dict(), vision_config=base.vision_config.to_dict(), embed_dim=16)
    fields.update(overrides)
    return XPoolConfig(**fields)


def tiny_xpool(seed: int = 0, **overrides) -> XPoolModel:
    torch.manual_seed(seed)
    return XPoolModel(tiny_xpool_config(**overrides)).eval()


def tiny_processor(folder, config) -> T2V2TProcessor:
    return T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config.vision_config), tiny_tokenizer(folder),
                          max_length=12)


def save_tiny_clip(folder, logit_scale: float = 4.0):
    """A tiny random `CLIPModel` with a byte-level CLIP tokenizer (every character is a token, so any caption
    tokenises) and a CLIP image processor, saved as a CLIP checkpoint folder."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.printable.strip():
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                           num_attention_heads=4),
        projection_dim=16)
    torch.manual_seed(0)
    clip = CLIPModel(config).eval()
    with torch.no_grad():
        clip.logit_scale.fill_(logit_scale)  # not CLIP's init, so copying it is visible
    clip.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return clip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    save_tiny_clip(folder)
    return folder


# ----- config -----------------------------------------------------------------------------------------------------
def test_defaults_follow_the_paper():
    config = XPoolConfig()
    assert (config.model_type, config.backbone, config.embed_dim) == ("xpool", "towers", 256)
    assert (config.num_attention_heads, config.pooling_dropout) == (1, 0.3)
    assert config.logit_scale_init_value == pytest.approx(math.log(1 / 0.07), abs=1e-4)
    assert config.logit_scale_max == pytest.approx(math.log(100))
    assert config.has_joint_encoder is False and config.clip_config is None
    clip = XPoolConfig(backbone="clip")
    assert clip.embed_dim == clip.clip_config.projection_dim == 512 and clip.text_config is None
    assert isinstance(AutoConfig.for_model("xpool"), XPoolConfig)


def test_json_round_trip(tmp_path):
    config = tiny_xpool_config(pooling_dropout=0.1, num_attention_heads=2)
    config.save_pretrained(tmp_path / "towers")
    reloaded = XPoolConfig.from_pretrained(tmp_path / "towers")
    assert (reloaded.pooling_dropout, reloaded.num_attention_heads, reloaded.clip_config) == (0.1, 2, None)
    assert reloaded.vision_config.num_frames == 3
    clip = XPoolConfig(backbone="clip", clip_config=dict(projection_dim=16))
    clip.save_pretrained(tmp_path / "clip")
    reloaded = XPoolConfig.from_pretrained(tmp_path / "clip")
    assert reloaded.backbone == "clip" and reloaded.embed_dim == 16 and reloaded.vision_config is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(backbone="s3d"), r"XPoolConfig.backbone='s3d' is invalid"),
        (dict(embed_dim=0), r"XPoolConfig.embed_dim=0 is invalid"),
        (dict(num_attention_heads=3), r"XPoolConfig.num_attention_heads=3 is invalid: embed_dim \(16\)"),
        (dict(pooling_dropout=1.0), r"XPoolConfig.pooling_dropout=1.0 is invalid"),
        (dict(logit_scale_init_value=5.0), r"XPoolConfig.logit_scale_init_value=5.0 is invalid"),
        (dict(logit_scale_max=-1.0), r"XPoolConfig.logit_scale_max=-1.0 is invalid"),
        (dict(similarity_text_chunk_size=0), r"XPoolConfig.similarity_text_chunk_size=0 is invalid"),
        (dict(clip_config=dict(projection_dim=16)), r"XPoolConfig.clip_config=.* must be None with backbone='towers'"),
        (dict(backbone="clip"), r"XPoolConfig.text_config=.* must be None with backbone='clip'"),
        (dict(vision_config=dict(num_frames=0)), r"T2V2TVisionConfig.num_frames=0"),
    ],
)
def test_bad_values_raise_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_xpool_config(**overrides)


def test_clip_backbone_embed_dim_must_be_clips():
    with pytest.raises(ValueError, match=r"XPoolConfig.embed_dim=8 is invalid: must equal clip_config.projection_dim"):
        XPoolConfig(backbone="clip", clip_config=dict(projection_dim=16), embed_dim=8)


# ----- the pooling ------------------------------------------------------------------------------------------------
def test_projections_start_as_identity():
    pooling = tiny_xpool().pooling
    for linear in (pooling.q_proj, pooling.k_proj, pooling.v_proj, pooling.out_proj, pooling.linear_proj):
        assert torch.equal(linear.weight, torch.eye(16)) and torch.equal(linear.bias, torch.zeros(16))


def test_identical_frames_pool_to_their_layer_norm_whatever_the_text():
    """With identity projections and identical frames, the attention is uniform and the pooled embedding is
    LN(LN(LN(f)) + LN(LN(f))) = LN(f), whatever the caption."""
    pooling = tiny_xpool().pooling
    generator = torch.Generator().manual_seed(0)
    frame = torch.randn(2, 1, 16, generator=generator)
    keys, values = pooling.keys_values(frame.expand(-1, 5, -1))
    texts = torch.randn(3, 16, generator=generator)
    with torch.no_grad():
        pooled, attention = pooling(texts, keys, values, output_attentions=True)
    torch.testing.assert_close(attention, torch.full_like(attention, 1 / 5))
    expected = F.layer_norm(frame[:, 0], (16,), eps=1e-5)
    torch.testing.assert_close(pooled, expected[None].expand(3, -1, -1), atol=1e-4, rtol=1e-4)


def test_attention_sums_to_one_and_the_text_conditions_the_pooling():
    pooling = tiny_xpool().pooling
    generator = torch.Generator().manual_seed(1)
    keys, values = pooling.keys_values(torch.randn(4, 6, 16, generator=generator))
    texts = torch.randn(2, 16, generator=generator)
    with torch.no_grad():
        pooled, attention = pooling(texts, keys, values, output_attentions=True)
    assert attention.shape == (2, 4, 1, 6)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 4, 1))
    assert (attention[0] - attention[1]).abs().max() > 0.05  # each caption weighs the frames differently
    assert (pooled[0] - pooled[1]).abs().max() > 0.05  # and so gets its own video embedding


def test_logit_scale_is_clamped_at_ln_100():
    model = tiny_xpool()
    inputs = tiny_inputs(model.config)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
        out = model(**inputs)
        similarity = model.retrieval_similarity(model.encode_text(inputs["input_ids"], inputs["attention_mask"]),
                                                model.encode_video(inputs["pixel_values_videos"]))
    assert float(model.logit_scale_value.detach()) == pytest.approx(100.0, rel=1e-5)
    torch.testing.assert_close(out.logits_per_text, 100.0 * similarity)


def test_loss_has_multi_positive_targets_and_every_parameter_gets_a_gradient():
    model = tiny_xpool().train()
    model.config.pooling_dropout = 0.0
    model.pooling.dropout.p = 0.0  # deterministic, to compare with the hand computation
    inputs = tiny_inputs(model.config)  # captions 0 and 1 share video 0
    out = model(**inputs, return_loss=True)
    logits = out.logits_per_text
    targets = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    expected = (-(logits.log_softmax(1) * targets).sum(1).mean() - (logits.T.log_softmax(1) * targets).sum(1).mean())
    torch.testing.assert_close(out.loss, expected / 2)
    out.loss.backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, missing


def test_gathered_loss_averages_to_the_single_process_loss(monkeypatch):
    """Two simulated processes, each with half the batch: texts are scored against every process's videos and
    videos against every process's texts, pooling per pair; the mean of their losses is the one-process loss."""
    model = tiny_xpool()
    generator = torch.Generator().manual_seed(2)
    texts, frames = torch.randn(6, 16, generator=generator), torch.randn(6, 3, 16, generator=generator)
    ids = torch.tensor([0, 1, 0, 2, 3, 2])  # positives across the two halves
    with torch.no_grad():
        single = model.contrastive_loss(texts, frames, ids)
        halves = []
        for rank in (0, 1):
            rows = slice(3 * rank, 3 * rank + 3)
            local = (texts[rows], frames[rows], ids[rows])
            full = {id(local[0]): texts, id(local[1]): frames, id(local[2]): ids}
            monkeypatch.setattr(modeling_xpool, "is_distributed", lambda: True)
            monkeypatch.setattr(modeling_xpool, "gather_batches", lambda tensor, with_grad: full[id(tensor)])
            halves.append(model.contrastive_loss(*local))
    torch.testing.assert_close((halves[0] + halves[1]) / 2, single)


# ----- evaluation: cached keys/values, chunked over texts -----------------------------------------------------------
def test_cached_chunked_similarity_equals_the_model_and_stays_within_one_chunk():
    model = tiny_xpool()
    config = model.config
    inputs = tiny_inputs(config, batch=7)
    videos = tiny_inputs(config, batch=5, seed=3)["pixel_values_videos"]
    shapes = []
    model.pooling.register_forward_hook(lambda module, args, output: shapes.append(tuple(output[0].shape)))
    with torch.no_grad():
        direct = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       pixel_values_videos=videos).logits_per_text / model.logit_scale_value
        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        video = model.encode_video(videos)
        shapes.clear()
        chunked = model.retrieval_similarity(text, video, text_chunk_size=3)
        chunk_shapes = list(shapes)
        unchunked = model.retrieval_similarity(text, video, text_chunk_size=100)
        # Brute force, one (text, video) pair at a time from the raw features.
        frames = model.frame_features(videos)
        features = model.text_features(inputs["input_ids"], inputs["attention_mask"])
        pairs = torch.tensor([[model.pooling.similarity(features[t:t + 1], *model.pooling.keys_values(frames[v:v + 1]))
                               .item() for v in range(5)] for t in range(7)])
    assert chunk_shapes == [(3, 5, 16), (3, 5, 16), (1, 5, 16)]  # never more than one chunk of texts pooled
    torch.testing.assert_close(chunked, unchunked)
    torch.testing.assert_close(chunked, direct)
    torch.testing.assert_close(chunked, pairs, atol=1e-5, rtol=1e-5)


def test_retriever_reranks_candidates_with_the_pooled_similarity(tmp_path):
    model = tiny_xpool()
    processor = tiny_processor(tmp_path / "tok", model.config)
    paths = [str(write_grey_video(tmp_path / f"clip{i}.mp4", num_frames=6, step=7 + 6 * i)) for i in range(5)]
    retriever = VideoRetriever(model, processor, show_progress=False)
    retriever.index_videos(paths)
    assert retriever.can_rerank
    results = retriever.search(CAPTIONS[:2], k=3, rerank=True, rerank_k=5)  # every video: the exact X-Pool order
    with torch.no_grad():
        similarity = model.retrieval_similarity(model.encode_text(**processor(text=CAPTIONS[:2])),
                                                model.encode_video(processor(videos=paths)["pixel_values_videos"]))
    for row, hits in enumerate(results):
        assert [hit.index for hit in hits] == similarity[row].argsort(descending=True)[:3].tolist()
        np.testing.assert_allclose([hit.score for hit in hits], similarity[row].sort(descending=True).values[:3],
                                   atol=1e-5)


# ----- CLIP backbone ----------------------------------------------------------------------------------------------
def test_clip_backbone_loads_like_the_training_scripts(clip_folder):
    clip = CLIPModel.from_pretrained(clip_folder).eval()
    model, processor = load_model_and_processor(
        ModelArguments(clip_model_name_or_path=str(clip_folder), num_frames=3, max_length=24), pretraining=False)
    assert type(model) is XPoolModel and model.config.backbone == "clip" and model.config.embed_dim == 16
    for name, value in clip.state_dict().items():
        assert torch.equal(model.clip.state_dict()[name], value), name
    assert float(model.logit_scale_value.detach()) == pytest.approx(math.exp(4.0), rel=1e-5)  # CLIP's own, copied
    assert type(processor.tokenizer).__name__ == "CLIPTokenizer"
    video_processor = processor.video_processor
    assert video_processor.num_frames == 3 and video_processor.output_size == (32, 32)
    assert tuple(video_processor.image_mean) == pytest.approx(CLIPImageProcessor().image_mean)

    videos = [np.random.default_rng(i).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8) for i in range(3)]
    batch = processor(text=CAPTIONS, videos=videos)
    model.eval()
    with torch.no_grad():
        frames = model.frame_features(batch["pixel_values_videos"])
        texts = model.text_features(batch["input_ids"], batch["attention_mask"])
        expected_frames = clip.get_image_features(pixel_values=batch["pixel_values_videos"].flatten(0, 1))
        expected_texts = clip.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(frames, expected_frames.pooler_output.view(3, 3, 16))
    torch.testing.assert_close(texts, expected_texts.pooler_output)

    model.train()
    model(**batch, video_ids=torch.tensor([0, 1, 1]), return_loss=True).loss.backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, missing
    assert model.clip.logit_scale.grad is not None  # X-Pool trains CLIP's logit scale


# ----- save / load ------------------------------------------------------------------------------------------------
def assert_reloads_exactly_by_model_type(model, tmp_path) -> None:
    """`model` saved as a Hub folder comes back, through the training scripts' factory and through AutoModel /
    AutoProcessor, as its own class with identical weights and outputs; it has no pretraining variant."""
    model_type, model_class = model.config.model_type, type(model)
    save_hub_folder(model, tiny_processor(tmp_path / "tok", model.config), tmp_path / "model")
    args = ModelArguments(model_name_or_path=str(tmp_path / "model"))
    reloaded, reloaded_processor = load_model_and_processor(args, pretraining=False)
    assert type(reloaded) is model_class and type(AutoModel.from_pretrained(tmp_path / "model")) is model_class
    assert type(reloaded_processor) is T2V2TProcessor
    assert type(AutoProcessor.from_pretrained(tmp_path / "model")) is T2V2TProcessor
    for name, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], value), name
    inputs = tiny_inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**inputs).logits_per_text, model(**inputs).logits_per_text,
                                   rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"model_type='{model_type}' has no pretraining variant"):
        load_model_and_processor(args, pretraining=True)


def test_save_load_is_exact_and_checkpoints_load_by_model_type(tmp_path):
    model = tiny_xpool(seed=3)
    with torch.no_grad():
        model.pooling.q_proj.weight.add_(0.1)  # off the identity, so a reload that re-initialised would show
    assert_reloads_exactly_by_model_type(model, tmp_path)


REMOTE_SCRIPT = WITHOUT_PACKAGE + textwrap.dedent(
    """

    from transformers import AutoModel, AutoProcessor
    captions, videos_file, out_file, folders = sys.argv[1].split("|"), sys.argv[2], sys.argv[3], sys.argv[4:]
    videos = list(torch.load(videos_file).numpy())
    results = {}
    for folder in folders:
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        batch = processor(text=captions, videos=videos)
        with torch.no_grad():
            out = model(**batch)
            features = (model.get_text_features(batch["input_ids"], batch["attention_mask"]),
                        model.get_video_features(batch["pixel_values_videos"]))
        results[folder] = {"class": type(model).__module__ + "." + type(model).__name__,
                           "processor": type(processor).__module__, "input_ids": batch["input_ids"],
                           "logits_per_text": out.logits_per_text, "features": features}
    torch.save(results, out_file)
    """
)


def run_in_fresh_process(tmp_path, folders, captions, videos) -> dict:
    """Load each Hub folder with `trust_remote_code=True` in a process that cannot import this package; returns
    its outputs on `captions` and `videos` per folder."""
    torch.save(torch.from_numpy(np.stack(videos)), tmp_path / "videos.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, "|".join(captions), str(tmp_path / "videos.pt"),
         str(tmp_path / "out.pt"), *map(str, folders)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp_path / "out.pt")


def assert_loads_without_the_package(tmp_path, folders: dict) -> None:
    """Each folder (-> the `(model, processor)` saved there) loads with `trust_remote_code=True` in a process that
    cannot import the package, from the folder's own code, and gives exactly the saved model's outputs."""
    videos = [np.random.default_rng(i).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8) for i in range(2)]
    remote = run_in_fresh_process(tmp_path, list(folders), CAPTIONS[:2], videos)
    for folder, (model, processor) in folders.items():
        result = remote[str(folder)]
        assert result["class"].startswith("transformers_modules.")
        assert result["class"].endswith("." + type(model).__name__)
        assert result["processor"].startswith("transformers_modules.")
        batch = processor(text=CAPTIONS[:2], videos=videos)
        assert torch.equal(result["input_ids"], batch["input_ids"])
        with torch.no_grad():
            local = model(**batch).logits_per_text
            features = (model.get_text_features(batch["input_ids"], batch["attention_mask"]),
                        model.get_video_features(batch["pixel_values_videos"]))
        torch.testing.assert_close(result["logits_per_text"], local, rtol=0, atol=0)
        for remote_features, local_features in zip(result["features"], features):
            torch.testing.assert_close(remote_features, local_features, rtol=0, atol=0)


@pytest.mark.slow
def test_hub_folders_load_as_custom_code_in_a_fresh_process(tmp_path, clip_folder):
    towers = tiny_xpool(seed=4)
    towers_processor = tiny_processor(tmp_path / "tok", towers.config)
    clip_model, clip_processor = load_model_and_processor(
        ModelArguments(clip_model_name_or_path=str(clip_folder), num_frames=3, max_length=24), pretraining=False)
    folders = {tmp_path / "towers": (towers, towers_processor), tmp_path / "clip": (clip_model.eval(), clip_processor)}
    for folder, (model, processor) in folders.items():
        save_hub_folder(model, processor, folder)
        saved = {path.name for path in folder.iterdir()}
        assert {"configuration_xpool.py", "modeling_xpool.py", "model.safetensors"} <= saved
        assert "__init__.py" not in saved

    assert_loads_without_the_package(tmp_path, folders)
