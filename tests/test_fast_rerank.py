"""The cached joint encoder (`build_joint_cache` + `score_pairs(use_joint_cache=True)`) equals the straightforward
`fuse` path: every fusion mode, both bypass modes, several videos, captions of different lengths with padding."""

import pytest
import torch

from modeling_t2v2t import T2V2TModel
from tiny_models import tiny_config

MODES = [("t2v2t", "self"), ("t2v2t", "null"), ("naive_t2v2t", "self"), ("v2t", "self")]


def _model(fusion_mode, bypass_mode, **overrides):
    torch.manual_seed(0)
    config = tiny_config(fusion_mode=fusion_mode, bypass_mode=bypass_mode, rerank_score="vtm",
                         t2v_layer_scale_init_value=0.5, **overrides)
    model = T2V2TModel(config).eval()
    with torch.no_grad():  # move every weight off its init (zero null values, constant gates) so all terms count
        generator = torch.Generator().manual_seed(1)
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def _captions(generator, count=7, length=9):
    ids = torch.randint(5, 60, (count, length), generator=generator)
    mask = torch.ones_like(ids)
    for row, stop in enumerate([3, 9, 6, 4, 9, 2, 5][:count]):  # different lengths, right-padded
        mask[row, stop:] = 0
    mask[:, -1] = 0  # a padding column shared by all captions
    return ids, mask


@pytest.mark.parametrize("fusion_mode,bypass_mode", MODES)
def test_cached_scores_equal_reference(fusion_mode, bypass_mode):
    model = _model(fusion_mode, bypass_mode)
    generator = torch.Generator().manual_seed(2)
    ids, mask = _captions(generator)
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        videos = model.encode_video(torch.randn(4, 3, 3, 32, 32, generator=generator), joint_cache=True)
        # Videos 0 and 1 have several captions (shared keys/values), 2 and 3 one each (the batched branch).
        video_index = torch.tensor([0, 1, 2, 0, 3, 1, 0])
        kwargs = dict(text_encoding=text, video_encoding=videos, video_index=video_index, output_bypass_probs=True)
        fast = model.score_pairs(**kwargs)
        reference = model.score_pairs(**kwargs, use_joint_cache=False)
    torch.testing.assert_close(fast.vtm_logits, reference.vtm_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.scores, reference.scores, rtol=1e-4, atol=1e-5)
    assert reference.scores.std() > 1e-2  # the pairs really differ (the check is not on constants)
    if fusion_mode == "t2v2t":
        assert len(fast.bypass_probs) == 1
        torch.testing.assert_close(fast.bypass_probs[0], reference.bypass_probs[0], rtol=1e-4, atol=1e-6)
    else:
        assert fast.bypass_probs is None and reference.bypass_probs is None


@pytest.mark.parametrize("fusion_mode,bypass_mode", MODES[:3])
def test_text_to_video_update_matters(fusion_mode, bypass_mode):
    """The low-rank term is exercised: zeroing the text->video layer scale changes the scores of both paths."""
    model = _model(fusion_mode, bypass_mode)
    ids, mask = _captions(torch.Generator().manual_seed(3), count=3)
    pixels = torch.randn(3, 3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = model.score_pairs(ids, mask, pixels).scores
        model.t2v_layers[0].layer_scale.zero_()
        after_fast = model.score_pairs(ids, mask, pixels).scores
        after_reference = model.score_pairs(ids, mask, pixels, use_joint_cache=False).scores
    assert (before - after_fast).abs().max() > 1e-3
    torch.testing.assert_close(after_fast, after_reference, rtol=1e-4, atol=1e-5)


def test_cache_is_per_video_and_in_model_dtype():
    model = _model("t2v2t", "self")
    config = model.config
    with torch.no_grad():
        videos = model.encode_video(torch.randn(2, 3, 3, 32, 32), joint_cache=True)
    tokens = videos.video_tokens.shape[1]
    fusion_layers = config.text_config.num_hidden_layers - config.fusion_layer
    assert videos.fusion_keys.shape == (2, fusion_layers, tokens, config.text_config.hidden_size)
    assert videos.fusion_values.shape == videos.fusion_keys.shape
    assert videos.t2v_queries.shape == (2, tokens, config.vision_config.hidden_size)
    assert videos.t2v_bypass_logits.shape == (2, config.vision_config.num_attention_heads, tokens)
    assert videos.fusion_keys.dtype == model.dtype
    # select() carries the cache, so a query against k cached videos needs no rebuild.
    picked = videos.select(torch.tensor([1]))
    torch.testing.assert_close(picked.fusion_keys[0], videos.fusion_keys[1])


def test_cached_path_without_prebuilt_cache_and_aligned_pairs():
    """score_pairs(...) on raw inputs (aligned pairs, no video_index) takes the cached path by default."""
    model = _model("t2v2t", "null")
    ids, mask = _captions(torch.Generator().manual_seed(5), count=3)
    pixels = torch.randn(3, 3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        fast = model.score_pairs(ids, mask, pixels)
        reference = model.score_pairs(ids, mask, pixels, use_joint_cache=False)
    torch.testing.assert_close(fast.scores, reference.scores, rtol=1e-4, atol=1e-5)


def test_two_text_to_video_layers_use_the_reference_path():
    model = _model("t2v2t", "self", num_t2v_layers=2)
    assert not model.supports_joint_cache
    ids, mask = _captions(torch.Generator().manual_seed(7), count=2)
    pixels = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        default = model.score_pairs(ids, mask, pixels).scores
        reference = model.score_pairs(ids, mask, pixels, use_joint_cache=False).scores
        torch.testing.assert_close(default, reference)
        with pytest.raises(ValueError, match="num_t2v_layers=2"):
            model.score_pairs(ids, mask, pixels, use_joint_cache=True)


def test_video_index_shape_is_checked():
    model = _model("v2t", "self")
    ids, mask = _captions(torch.Generator().manual_seed(8), count=3)
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        videos = model.encode_video(torch.randn(2, 3, 3, 32, 32))
        with pytest.raises(ValueError, match="video_index"):
            model.score_pairs(text_encoding=text, video_encoding=videos, video_index=torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="3 texts and 2 videos"):  # no video_index: pairs must be aligned
            model.score_pairs(text_encoding=text, video_encoding=videos)


def test_two_stage_evaluation_builds_each_cache_once_and_matches_reference(monkeypatch):
    import numpy as np

    from modeling_t2v2t.retrieval.evaluation import evaluate_two_stage

    model = _model("t2v2t", "self")
    ids, mask = _captions(torch.Generator().manual_seed(9), count=6)
    videos = torch.randn(4, 3, 3, 32, 32, generator=torch.Generator().manual_seed(10))
    text_batches = [{"input_ids": ids[:4], "attention_mask": mask[:4]},
                    {"input_ids": ids[4:], "attention_mask": mask[4:]}]
    text_to_video = torch.tensor([0, 1, 2, 3, 0, 1])
    builds = []
    build = model.build_joint_cache
    monkeypatch.setattr(model, "build_joint_cache", lambda encoding: builds.append(len(encoding.video_tokens))
                        or build(encoding))

    def evaluate(use_joint_cache):
        return evaluate_two_stage(model, text_batches, [videos[:3], videos[3:]], text_to_video, 4, k=2,
                                  token_dtype=np.float32, progress=False, pair_batch_size=3,
                                  use_joint_cache=use_joint_cache)

    fast, reference = evaluate(True), evaluate(False)
    assert builds == [1, 1, 1, 1]  # one cache per video with candidates (every video here), one video at a time
    assert fast.num_pairs_scored == reference.num_pairs_scored > 4
    torch.testing.assert_close(fast.t2v_scores, reference.t2v_scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.v2t_scores, reference.v2t_scores, rtol=1e-4, atol=1e-5)
    assert fast.metrics == reference.metrics


# ----- VideoRetriever: reranking from the stored joint caches, without decoding --------------------------------
def test_retriever_reranks_from_stored_joint_cache_without_decoding(tmp_path):
    from tiny_media import write_grey_video
    from tiny_models import tiny_tokenizer

    from modeling_t2v2t import T2V2TProcessor, T2V2TVideoProcessor
    from modeling_t2v2t.retrieval.retriever import VideoRetriever

    model = _model("t2v2t", "self")
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(model.config), tiny_tokenizer(tmp_path / "tok"),
                               max_length=12)
    paths = [str(write_grey_video(tmp_path / f"clip{i}.mp4", num_frames=6, step=7 + 6 * i)) for i in range(5)]
    queries = ["a red square moves left", "a blue circle spins"]
    plain = VideoRetriever(model, processor, show_progress=False, rerank_cache_size=0)
    plain.index_videos(paths, batch_size=2)
    expected = plain.search(queries, k=4, rerank=True, rerank_k=5)

    cached = VideoRetriever(model, processor, show_progress=False, joint_cache=True, joint_cache_dtype="float32")
    cached.index_videos(paths[:3], batch_size=2)
    cached.index_videos(paths[3:])  # a second call appends to the store
    decoded = []
    original_load = cached._load_video
    cached._load_video = lambda path: decoded.append(path) or original_load(path)
    found = cached.search(queries, k=4, rerank=True, rerank_k=5)
    assert decoded == []  # every candidate came from the store
    for hits, reference in zip(found, expected):
        assert [hit.video_id for hit in hits] == [hit.video_id for hit in reference]
        torch.testing.assert_close(torch.tensor([hit.score for hit in hits]),
                                   torch.tensor([hit.score for hit in reference]), rtol=1e-4, atol=1e-5)

    # Saved with the index (float16) and memory-mapped back: still no decoding, scores within float16 rounding.
    half = VideoRetriever(model, processor, show_progress=False, joint_cache=True)
    half.index_videos(paths, batch_size=2)
    half.save(tmp_path / "index")
    assert (tmp_path / "index" / "joint_cache" / "fusion_keys.bin").stat().st_size == (
        5 * 2 * model.config.vision_config.num_frames * 17 * 32 * 2)  # videos x layers x tokens x width x 2 bytes
    loaded = VideoRetriever.load(tmp_path / "index", model, processor, show_progress=False)
    loaded._load_video = lambda path: decoded.append(path) or original_load(path)
    found = loaded.search(queries, k=4, rerank=True, rerank_k=5)
    assert decoded == []
    for hits, reference in zip(found, expected):
        torch.testing.assert_close(torch.tensor([hit.score for hit in hits]),
                                   torch.tensor([hit.score for hit in reference]), rtol=2e-2, atol=2e-2)

    # Videos added without a cache (add_embeddings) are decoded at rerank time, as before.
    with torch.no_grad():
        embedding = model.get_video_features(processor(videos=paths[:1])["pixel_values_videos"])
    loaded.add_embeddings(embedding, ["extra"], paths[:1])
    loaded.search(queries[0], k=6, rerank=True, rerank_k=6)
    assert decoded == paths[:1]


def test_retriever_joint_cache_needs_a_joint_encoder(tmp_path):
    from modeling_t2v2t.retrieval.retriever import VideoRetriever

    dual = T2V2TModel(tiny_config(fusion_mode="none")).eval()
    with pytest.raises(ValueError, match="joint_cache=True"):
        VideoRetriever(dual, processor=None, joint_cache=True)


def test_joint_cache_store_rejects_bad_dtype_and_truncated_files(tmp_path):
    from modeling_t2v2t.retrieval.joint_cache import JointCacheStore

    with pytest.raises(ValueError, match="dtype='int8'"):
        JointCacheStore("int8")
    model = _model("v2t", "self")
    with torch.no_grad():
        videos = model.encode_video(torch.randn(2, 3, 3, 32, 32), joint_cache=True)
    store = JointCacheStore("float32")
    store.append([0, 1], videos)
    store.save(tmp_path / "cache")
    loaded = JointCacheStore.load(tmp_path / "cache")
    torch.testing.assert_close(loaded.get([1], torch.float32, "cpu")["fusion_keys"], videos.fusion_keys[1:])
    path = tmp_path / "cache" / "fusion_values.bin"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="fusion_values.bin .* truncated"):
        JointCacheStore.load(tmp_path / "cache")
    with pytest.raises(ValueError, match="joint cache"):
        store.append([2], model.encode_video(torch.randn(1, 3, 3, 32, 32)))
