"""Two-stage retrieval evaluation: reranked scores equal direct joint-encoder scores, candidates are each
direction's top-k, non-candidates keep embedding order below them, the token store spills to disk, caption batches
of different lengths, X-Pool scored through its `retrieval_similarity` hook, CRET by its embeddings, and the
dataset loaders feed it end to end."""

import numpy as np
import pytest
import torch
from tiny_media import write_grey_video
from tiny_models import tiny_config, tiny_gallery, tiny_tokenizer

from modeling_t2v2t import (
    CRETConfig,
    CRETModel,
    T2V2TModel,
    T2V2TProcessor,
    T2V2TVideoProcessor,
    XPoolConfig,
    XPoolModel,
)
from modeling_t2v2t.retrieval.evaluation import VideoTokenStore, candidate_pairs, evaluate_two_stage
from modeling_t2v2t.retrieval.metrics import retrieval_metrics
from processing.batching import retrieval_loaders
from processing.schema import build_dataset, make_record

NUM_VIDEOS, CAPTIONS_PER_VIDEO = 5, 2


@pytest.fixture(scope="module")
def gallery():
    model, inputs, text_batches, videos, text_to_video = tiny_gallery(NUM_VIDEOS, CAPTIONS_PER_VIDEO)
    with torch.no_grad():
        direct = torch.stack([
            model.score_pairs(inputs["input_ids"], inputs["attention_mask"],
                              videos[v:v + 1].expand(len(text_to_video), -1, -1, -1, -1)).scores
            for v in range(NUM_VIDEOS)], dim=1)  # (texts, videos)
    return model, text_batches, [videos[:3], videos[3:]], text_to_video, direct


def run(gallery, **kwargs):
    model, text_batches, video_batches, text_to_video, _ = gallery
    kwargs.setdefault("token_dtype", np.float32)
    return evaluate_two_stage(model, text_batches, video_batches, text_to_video, NUM_VIDEOS, progress=False,
                              **kwargs)


def test_exhaustive_scores_every_pair_like_the_model(gallery):
    result = run(gallery, k=None)
    assert result.num_pairs_scored == NUM_VIDEOS * NUM_VIDEOS * CAPTIONS_PER_VIDEO
    torch.testing.assert_close(result.t2v_scores, gallery[4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.v2t_scores, gallery[4], atol=1e-5, rtol=1e-5)
    assert result.metrics["reranked"] == retrieval_metrics(gallery[4], gallery[3])


def test_top_k_reranking(gallery):
    k = 2
    result = run(gallery, k=k)
    t2v, v2t = candidate_pairs(result.similarity, k)
    assert bool((t2v.sum(1) == k).all()) and bool((v2t.sum(0) == k).all())
    assert result.num_pairs_scored == int((t2v | v2t).sum()) < t2v.numel()
    direct = gallery[4]
    torch.testing.assert_close(result.t2v_scores[t2v], direct[t2v], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.v2t_scores[v2t], direct[v2t], atol=1e-5, rtol=1e-5)
    for row in range(t2v.shape[0]):  # each caption: candidates first, the rest in embedding order
        order = torch.argsort(result.t2v_scores[row], descending=True)
        assert set(order[:k].tolist()) == set(t2v[row].nonzero().flatten().tolist())
        rest = order[k:]
        assert torch.equal(rest, rest[torch.argsort(result.similarity[row, rest], descending=True)])
    assert set(result.metrics) == {"embedding", "reranked"}
    assert result.metrics["embedding"] == retrieval_metrics(result.similarity, gallery[3])


def test_token_store_spills_to_disk_with_the_same_result(gallery):
    in_memory = run(gallery, k=2)
    on_disk = run(gallery, k=2, max_memory_bytes=0)
    torch.testing.assert_close(on_disk.t2v_scores, in_memory.t2v_scores)
    store = VideoTokenStore(3, max_memory_bytes=0)
    store.put(0, torch.ones(3, 4, 8))
    assert store.on_disk and torch.equal(store.get(1, 3), torch.ones(2, 4, 8))
    store.close()


def test_half_precision_tokens_are_close(gallery):
    exact, half = run(gallery, k=None), run(gallery, k=None, token_dtype=np.float16)
    torch.testing.assert_close(half.t2v_scores, exact.t2v_scores, atol=2e-2, rtol=1e-2)


def test_dual_encoder_reports_embedding_metrics_only(gallery):
    model = T2V2TModel(tiny_config(fusion_mode="none")).eval()
    _, text_batches, video_batches, text_to_video, _ = gallery
    result = evaluate_two_stage(model, text_batches, video_batches, text_to_video, NUM_VIDEOS, progress=False)
    assert set(result.metrics) == {"embedding"} and result.t2v_scores is None
    with pytest.raises(ValueError, match="no joint encoder"):
        evaluate_two_stage(model, text_batches, video_batches, text_to_video, NUM_VIDEOS, rerank=True)


def test_caption_batches_of_different_lengths_give_the_same_result(gallery):
    model, text_batches, video_batches, text_to_video, _ = gallery
    # The second batch padded to 3 more tokens (masked), as a collator padding each batch to its longest caption does.
    longer = [text_batches[0], {key: torch.nn.functional.pad(value, (0, 3)) for key, value in text_batches[1].items()}]
    longer += text_batches[2:]
    assert longer[1]["input_ids"].shape[1] == longer[0]["input_ids"].shape[1] + 3
    result = evaluate_two_stage(model, longer, video_batches, text_to_video, NUM_VIDEOS, k=2, progress=False,
                                token_dtype=np.float32)
    reference = run(gallery, k=2)
    torch.testing.assert_close(result.similarity, reference.similarity)
    torch.testing.assert_close(result.t2v_scores, reference.t2v_scores, atol=1e-5, rtol=1e-5)


def baseline_config(config_class, **fields):
    base = tiny_config()
    return config_class(text_config=base.text_config.to_dict(), vision_config=base.vision_config.to_dict(),
                        embed_dim=16, **fields)


def test_xpool_is_scored_by_its_pooled_similarity(gallery):
    """X-Pool defines `retrieval_similarity`: the embedding stage uses it on cached per-video keys/values."""
    torch.manual_seed(0)
    model = XPoolModel(baseline_config(XPoolConfig, similarity_text_chunk_size=3)).eval()
    _, text_batches, video_batches, text_to_video, _ = gallery
    result = evaluate_two_stage(model, text_batches, video_batches, text_to_video, NUM_VIDEOS, progress=False)
    with torch.no_grad():
        text = model.encode_text(torch.cat([b["input_ids"] for b in text_batches]),
                                 torch.cat([b["attention_mask"] for b in text_batches]))
        video = model.encode_video(torch.cat(video_batches))
        expected = model.retrieval_similarity(text, video)
    torch.testing.assert_close(result.similarity, expected)
    assert not torch.allclose(result.similarity, text.text_embeds @ video.video_embeds.T, atol=1e-3)
    assert set(result.metrics) == {"embedding"} and result.num_pairs_scored == 0
    assert result.metrics["embedding"] == retrieval_metrics(expected, text_to_video)
    with pytest.raises(ValueError, match="XPoolModel has no joint encoder to rerank with"):
        evaluate_two_stage(model, text_batches, video_batches, text_to_video, NUM_VIDEOS, rerank=True)


def test_cret_is_scored_by_its_search_embeddings(gallery):
    torch.manual_seed(0)
    model = CRETModel(baseline_config(CRETConfig, num_centers=2, ccm_num_layers=1, ccm_num_attention_heads=2)).eval()
    _, text_batches, video_batches, text_to_video, _ = gallery
    result = evaluate_two_stage(model, text_batches, video_batches, text_to_video, NUM_VIDEOS, progress=False)
    with torch.no_grad():
        text = model.get_text_features(torch.cat([b["input_ids"] for b in text_batches]),
                                       torch.cat([b["attention_mask"] for b in text_batches]))
        video = model.get_video_features(torch.cat(video_batches))
    torch.testing.assert_close(result.similarity, text @ video.T)
    assert set(result.metrics) == {"embedding"}


def test_schema_dataset_end_to_end(tmp_path):
    records = [(make_record(str(write_grey_video(tmp_path / f"v{i}.mp4", 12 + i)), [f"a red square {w}" for w in
                                                                                    ("moves", "spins")][: 1 + i % 2],
                            f"v{i}", "test"), f"entry {i}") for i in range(3)]
    dataset, _ = build_dataset(records)
    config = tiny_config()
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config.vision_config),
                               tiny_tokenizer(tmp_path / "tok"), max_length=10)
    captions, videos, text_to_video, num_videos = retrieval_loaders(dataset, processor, batch_size=2)
    assert text_to_video.tolist() == [0, 1, 1, 2] and num_videos == 3
    result = evaluate_two_stage(T2V2TModel(config), captions, videos, text_to_video, num_videos, k=2,
                                progress=False)
    assert result.similarity.shape == (4, 3) and result.num_pairs_scored > 0
    assert 0 <= result.metrics["reranked"]["t2v_R1"] <= 100
