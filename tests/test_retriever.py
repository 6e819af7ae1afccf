"""VideoRetriever (index files or a Dataset, search, rerank, save/load, skips) and the search index backends, checked
against brute-force computations with the model itself."""

import logging
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset
from tiny_media import write_grey_video
from tiny_models import tiny_config, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.retrieval.retriever import SkippedVideo, VideoRetriever
from modeling_t2v2t.retrieval.index import ExactIndex, FaissIndex, build_index, load_index

QUERIES = ["a red square moves left", "a blue circle spins", "green square then up"]
NUM_VIDEOS = 7


def make_processor(folder, config):
    return T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config), tiny_tokenizer(folder), max_length=12)


def make_model(**overrides):
    torch.manual_seed(0)
    return T2V2TModel(tiny_config(**overrides)).eval()


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def processor(model, tmp_path_factory):
    return make_processor(tmp_path_factory.mktemp("tok"), model.config)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    # Different grey ramps (start level via the step) so that every clip has its own embedding.
    return [str(write_grey_video(folder / f"clip{i}.mp4", num_frames=6, step=7 + 6 * i)) for i in range(NUM_VIDEOS)]


@torch.no_grad()
def brute_force(model, processor, paths, queries):
    """Text x video similarity computed directly with the model, all videos in one batch."""
    text = model.get_text_features(**processor(text=queries))
    video = model.get_video_features(processor(videos=paths)["pixel_values_videos"])
    return text @ video.T


def assert_ranking(results, similarity, video_ids, k):
    for row, hits in enumerate(results):
        expected = similarity[row].argsort(descending=True)[:k]
        gaps = similarity[row][expected][:-1] - similarity[row][expected][1:]
        assert gaps.min() > 1e-5, "near-tied scores would make the comparison meaningless"
        assert [hit.video_id for hit in hits] == [video_ids[i] for i in expected.tolist()]
        torch.testing.assert_close(torch.tensor([hit.score for hit in hits]), similarity[row][expected],
                                   rtol=0, atol=1e-5)


# ----- retriever ------------------------------------------------------------------------------------------------
def test_search_equals_brute_force_ranking(model, processor, paths):
    retriever = VideoRetriever(model, processor, show_progress=False)
    assert retriever.index_videos(paths, batch_size=3) == NUM_VIDEOS  # batches of 3, 3, 1
    results = retriever.search(QUERIES, k=4)
    assert len(results) == len(QUERIES) and all(len(hits) == 4 for hits in results)
    assert_ranking(results, brute_force(model, processor, paths, QUERIES), paths, k=4)
    assert results[0][0].path == results[0][0].video_id and results[0][0].embedding_score is None
    # A single string is one query; k beyond the collection returns every video.
    assert len(retriever.search(QUERIES[0], k=50)) == 1 and len(retriever.search(QUERIES[0], k=50)[0]) == NUM_VIDEOS


def test_index_dataset_and_repeated_calls(model, processor, paths):
    ids = [f"vid{i}" for i in range(NUM_VIDEOS)]
    from_dataset = VideoRetriever(model, processor, show_progress=False)
    assert from_dataset.index_videos(Dataset.from_dict({"video": paths, "video_id": ids})) == NUM_VIDEOS
    assert from_dataset.video_ids == ids and from_dataset.paths == paths

    # Added in two calls, with a thread decoding ahead: the same rows.
    in_parts = VideoRetriever(model, processor, show_progress=False)
    assert in_parts.index_videos(Dataset.from_dict({"video": paths[:3]}), num_workers=1) == 3
    assert in_parts.index_videos(paths[3:], batch_size=2, num_workers=2) == NUM_VIDEOS - 3
    assert in_parts.video_ids == paths  # no video_id column: the path is the id

    similarity = brute_force(model, processor, paths, QUERIES)
    assert_ranking(from_dataset.search(QUERIES, k=5), similarity, ids, k=5)
    assert_ranking(in_parts.search(QUERIES, k=5), similarity, paths, k=5)

    with pytest.raises(ValueError, match="already indexed"):
        in_parts.index_videos(paths[:1])
    with pytest.raises(ValueError, match="2 videos but 1 video_ids"):
        VideoRetriever(model, processor).index_videos(paths[:2], video_ids=["x"])


def test_rerank_orders_candidates_by_score_pairs(model, processor, paths, monkeypatch):
    # The VTM logit alone: on a random tiny model the default score ("vtm+vtc") is dominated by the similarity term,
    # so reranking would rarely change the embedding order and the check below would prove little.
    monkeypatch.setattr(model.config, "rerank_score", "vtm")
    retriever = VideoRetriever(model, processor, rerank_cache_size=3, show_progress=False)
    retriever.index_videos(paths)
    k, rerank_k = 3, 5
    results = retriever.search(QUERIES, k=k, rerank=True, rerank_k=rerank_k)

    similarity = brute_force(model, processor, paths, QUERIES)
    with torch.no_grad():
        text = model.encode_text(**processor(text=QUERIES))
        for row, hits in enumerate(results):
            candidates = similarity[row].argsort(descending=True)[:rerank_k]
            videos = model.encode_video(processor(videos=[paths[i] for i in candidates])["pixel_values_videos"])
            pairs = text.select(torch.full((rerank_k,), row, dtype=torch.long))
            scores = model.score_pairs(text_encoding=pairs, video_encoding=videos).scores
            order = scores.argsort(descending=True)[:k]
            assert [hit.video_id for hit in hits] == [paths[i] for i in candidates[order].tolist()]
            torch.testing.assert_close(torch.tensor([hit.score for hit in hits]), scores[order], rtol=0, atol=1e-5)
            torch.testing.assert_close(torch.tensor([hit.embedding_score for hit in hits]),
                                       similarity[row][candidates[order]], rtol=0, atol=1e-5)
    # Reranking changes the order of the embedding ranking somewhere (else this test would prove little).
    plain = retriever.search(QUERIES, k=k)
    assert any([h.video_id for h in a] != [h.video_id for h in b] for a, b in zip(plain, results))

    # The LRU cache holds at most 3 videos; the most recently used candidates are not decoded again.
    assert len(retriever._cache) == 3
    cached = list(retriever._cache)
    loads = []
    original = retriever._load_video
    retriever._load_video = lambda path: loads.append(path) or original(path)
    again = retriever.search(QUERIES[-1], k=k, rerank=True, rerank_k=rerank_k)[0]
    assert [hit.video_id for hit in again] == [hit.video_id for hit in results[-1]]
    assert len(loads) == rerank_k - 3 and not {paths[row] for row in cached} & set(loads)
    with pytest.raises(ValueError, match="rerank_k"):
        retriever.search(QUERIES, k=4, rerank=True, rerank_k=2)


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_save_load_round_trip(model, processor, paths, tmp_path, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    retriever = VideoRetriever(model, processor, index_backend=backend, show_progress=False)
    retriever.index_videos(paths + [str(tmp_path / "missing.mp4")])
    retriever.save(tmp_path / "saved")
    loaded = VideoRetriever.load(tmp_path / "saved", model, processor, show_progress=False)
    assert loaded.video_ids == retriever.video_ids and loaded.index.backend == backend
    assert loaded.skipped == retriever.skipped and len(loaded.skipped) == 1
    for rerank in (False, True):
        assert loaded.search(QUERIES, k=4, rerank=rerank) == retriever.search(QUERIES, k=4, rerank=rerank)
    # The loaded retriever keeps growing.
    assert loaded.index_videos([paths[0]], video_ids=["again"]) == 1 and len(loaded) == NUM_VIDEOS + 1


def test_undecodable_videos_are_skipped_counted_and_logged(model, processor, paths, tmp_path, caplog):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not an mp4 file" * 10)
    missing = tmp_path / "missing.mp4"
    retriever = VideoRetriever(model, processor, show_progress=False)
    with caplog.at_level(logging.WARNING, logger="modeling_t2v2t.retrieval.retriever"):
        added = retriever.index_videos([paths[0], str(corrupt), paths[1], str(missing)], batch_size=2)
    assert added == 2 and retriever.video_ids == paths[:2]
    assert [item.path for item in retriever.skipped] == [str(corrupt), str(missing)]
    assert all(isinstance(item, SkippedVideo) and item.reason for item in retriever.skipped)
    assert "FileNotFoundError" in retriever.skipped[1].reason
    logged = caplog.text
    assert str(corrupt) in logged and str(missing) in logged and "2 could not be decoded" in logged


def test_load_with_other_embed_dim_raises(model, processor, paths, tmp_path):
    retriever = VideoRetriever(model, processor, show_progress=False)
    retriever.index_videos(paths[:2])
    retriever.save(tmp_path)
    other = make_model(embed_dim=8)
    with pytest.raises(ValueError, match=r"16-d embeddings.*8-d embeddings"):
        VideoRetriever.load(tmp_path, other, processor)


def test_query_validation(model, processor, paths):
    retriever = VideoRetriever(model, processor, show_progress=False)
    with pytest.raises(ValueError, match="no videos"):
        retriever.search("a red square")
    retriever.index_videos(paths[:2])
    for bad in ("", "   ", ["a red square", " \t"], []):
        with pytest.raises(ValueError, match="empty|no query"):
            retriever.search(bad)
    with pytest.raises(ValueError, match="k must be"):
        retriever.search("a red square", k=0)


def test_dual_encoder_searches_but_refuses_rerank(processor, paths):
    dual = make_model(fusion_mode="none")
    retriever = VideoRetriever(dual, processor, show_progress=False)
    retriever.index_videos(paths)
    assert_ranking(retriever.search(QUERIES, k=3), brute_force(dual, processor, paths, QUERIES), paths, k=3)
    assert not retriever.can_rerank
    with pytest.raises(ValueError, match="dual encoder"):
        retriever.search(QUERIES, rerank=True)


# ----- search index backends ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def single_threaded_faiss():
    # faiss' OpenMP threads spin at barriers: on a busy test machine 2 threads can be 10x slower than one.
    try:
        import faiss
    except ImportError:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def random_unit(rows, dim, seed):
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def naive_topk(queries, database, k):
    similarity = queries @ database.T
    order = similarity.argsort(dim=1, descending=True)[:, :k]
    return similarity.gather(1, order), order


def test_exact_index_equals_naive_argsort_across_blocks(tmp_path):
    database, queries = random_unit(50, 12, 0), random_unit(13, 12, 1)
    # Blocks of 7 rows and 5 queries per pass; adds of 3, 11 and 36 rows cross block boundaries.
    index = ExactIndex(block_size=7, query_batch_size=5)
    for part in database.split([3, 11, 36]):
        index.add(part)
    assert len(index) == 50 and torch.equal(index.embeddings, database)
    for k in (1, 7, 10, 50, 80):
        scores, indices = index.search(queries, k)
        expected_scores, expected_indices = naive_topk(queries, database, min(k, 50))
        assert torch.equal(indices, expected_indices)
        torch.testing.assert_close(scores, expected_scores, rtol=0, atol=1e-6)
    # Every row is its own best match (also as one 1-D query).
    assert index.search(database[17], 1)[1].tolist() == [[17]]

    index.save(tmp_path)
    loaded = load_index(tmp_path)
    assert isinstance(loaded, ExactIndex) and loaded.block_size == 7
    assert torch.equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])
    with pytest.raises(ValueError, match="embed_dim 5 but the index holds 12"):
        index.search(torch.randn(2, 5), 3)
    with pytest.raises(ValueError, match="NaN"):
        index.add(torch.full((1, 12), float("nan")))


def recall_at(found, expected):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.tolist(), expected.tolist())])


@pytest.mark.parametrize(
    "factory, params, min_recall",
    [("IVF64,Flat", {"nprobe": 32}, 0.8), ("HNSW32", {"efSearch": 128}, 0.9),
     ("PQ16x4fs,RFlat", {"k_factor": 50}, 0.9), (None, {}, 0.9)],  # None: the default, PQ16x4fs,RFlat k_factor=50
)
def test_faiss_index_recall_and_save_load(tmp_path, factory, params, min_recall):
    pytest.importorskip("faiss")
    database, queries = random_unit(6000, 32, 2), random_unit(50, 32, 3)
    _, expected = naive_topk(queries, database, 10)
    index = build_index(database, backend="faiss", factory=factory, **params)
    assert isinstance(index, FaissIndex) and index.is_built
    scores, indices = index.search(queries, 10)
    assert recall_at(indices, expected) >= min_recall
    # Returned scores are the true inner products of the returned rows.
    torch.testing.assert_close(scores, (queries[:, None] * database[indices]).sum(-1), rtol=0, atol=1e-4)
    if factory is None:
        assert index.factory == "PQ16x4fs,RFlat" and index.k_factor == 50
    elif factory.startswith("IVF"):
        index.nprobe = 64  # every list: exact
        assert recall_at(index.search(queries, 10)[1], expected) == 1.0

    index.save(tmp_path)
    loaded = load_index(tmp_path)
    assert isinstance(loaded, FaissIndex) and loaded.params() == index.params() and len(loaded) == 6000
    assert torch.equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])


def test_faiss_index_searches_exactly_until_large_enough(tmp_path):
    pytest.importorskip("faiss")
    database, queries = random_unit(600, 16, 4), random_unit(9, 16, 5)
    assert isinstance(build_index(database, backend="faiss"), ExactIndex)  # tiny: exact search

    index = FaissIndex(factory="IVF16,Flat", nprobe=1, exact_below=1000)
    for part in database.split(100):  # small adds, as the retriever makes
        index.add(part)
    assert index.min_build_size == 1000 and not index.is_built
    assert torch.equal(index.search(queries, 5)[1], naive_topk(queries, database, 5)[1])
    index.save(tmp_path)
    assert not load_index(tmp_path).is_built and len(load_index(tmp_path)) == 600

    index.add(random_unit(500, 16, 6))
    index.search(queries, 5)  # 1100 vectors: trains the IVF on all of them
    assert index.is_built and index.index.ntotal == 1100
    tiny = FaissIndex(factory="IVF16,Flat")
    tiny.add(database[:10])
    with pytest.raises(ValueError, match="nlist=16"):
        tiny.build(force=True)


def test_faiss_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        FaissIndex(factory="HNSW32")
