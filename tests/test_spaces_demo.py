"""The Gradio Space in spaces_demo/: the inference wrapper on the committed checkpoint and gallery, the asset
preparation, the app called through gradio_client, and a headless Chromium screenshot of a query."""

import base64
import io
import json
import logging
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor, save_hub_folder
from modeling_t2v2t.retrieval.retriever import VideoRetriever
from processing.text_cleaning import clean_caption
from tiny_media import write_grey_video
from tiny_models import tiny_config, tiny_tokenizer

SPACE = Path(__file__).resolve().parents[1] / "spaces_demo"

import app  # noqa: E402
import inference  # noqa: E402
import prepare_assets  # noqa: E402
from inference import DemoEngine, UploadError, UploadLimits  # noqa: E402

logger = logging.getLogger(__name__)

CHECKPOINT = "t2v2t-synthetic-quickstart"
CHECKPOINT_DIR = SPACE / "checkpoints" / CHECKPOINT
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
LIMITS = UploadLimits(max_bytes=200_000, max_seconds=3.0, max_per_session=3)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> DemoEngine:
    engine = DemoEngine(upload_dir=tmp_path_factory.mktemp("uploads"), limits=LIMITS)
    engine.checkpoint(CHECKPOINT)  # load and index the gallery once for the module
    return engine


@pytest.fixture(scope="module")
def good_video(tmp_path_factory) -> Path:
    # 20 frames at 10 fps: 2 s, under LIMITS.max_seconds.
    return write_grey_video(tmp_path_factory.mktemp("videos") / "grey ramp.mp4", num_frames=20, height=48, width=64)


# ----- committed assets ---------------------------------------------------------------------------------------
def test_committed_checkpoint_is_a_small_float16_hub_folder():
    names = {path.name for path in CHECKPOINT_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_t2v2t.py", "processor_config.json", "tokenizer.json"} <= names
    assert not [name for name in names if name.startswith("checkpoint-")
                or name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "tokenizer")]
    assert "auto_map" in json.loads((CHECKPOINT_DIR / "config.json").read_text())
    with safe_open(str(CHECKPOINT_DIR / "model.safetensors"), framework="pt") as weights:
        dtypes = {key: weights.get_slice(key).get_dtype() for key in weights.keys()}
    # Floating tensors are stored as float16; integer buffers (BatchNorm's step counters) keep their type.
    assert {dtype for key, dtype in dtypes.items() if not key.endswith("num_batches_tracked")} == {"F16"}
    assert {dtypes[key] for key in dtypes if key.endswith("num_batches_tracked")} <= {"I64"}
    # Under 50 MB, so it stays in git (the MiniLM text tower's 30,522-token embedding table is most of it).
    total = sum(path.stat().st_size for path in CHECKPOINT_DIR.iterdir())
    assert total < 50 * 2**20, f"checkpoint folder is {total / 2**20:.1f} MB"


def test_committed_gallery_is_small_and_consistent():
    manifest = json.loads((SPACE / "gallery" / "gallery.json").read_text())
    files = {entry["file"] for entry in manifest["videos"]}
    on_disk = {path.name for path in (SPACE / "gallery").iterdir()} - {"gallery.json"}
    assert files == on_disk and 24 <= len(files) <= 40
    assert all(entry["captions"] and entry["video_id"].startswith("test_") for entry in manifest["videos"])
    total = sum(path.stat().st_size for path in (SPACE / "gallery").iterdir())
    assert total < 3 * 2**20, f"gallery is {total / 2**20:.1f} MB"


# ----- inference wrapper --------------------------------------------------------------------------------------
def test_clean_query_is_the_training_caption_cleaning():
    for text in ("A man's red-hot guitar solo!  (Live)", "We see a tiny Blue box; it SHRINKS.", "a/b <person> ~x"):
        assert inference.clean_query(text) == clean_caption(text)


@pytest.mark.parametrize("rank_by", ["embedding", "rerank"])
def test_query_returns_k_hits_sorted_by_the_ranking_score(engine, rank_by):
    result = engine.search("The video shows a small blue box that grows.", CHECKPOINT, k=5, rank_by=rank_by)
    assert len(result.hits) == 5 and [hit.rank for hit in result.hits] == [1, 2, 3, 4, 5]
    assert len({hit.record.video_id for hit in result.hits}) == 5
    assert all(hit.rerank_score is not None for hit in result.hits)  # both scores for the table
    key = (lambda hit: hit.embedding_score) if rank_by == "embedding" else (lambda hit: hit.rerank_score)
    scores = [key(hit) for hit in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert result.ranked_by == rank_by and result.num_searched == len(engine.gallery)
    assert result.hits[0].preview.dtype == np.uint8 and result.hits[0].preview.ndim == 3


def test_embedding_scores_match_the_package_retriever(engine):
    """The Space's own in-memory index scores exactly like modeling_t2v2t.retrieval.retriever.VideoRetriever."""
    loaded = engine.checkpoint(CHECKPOINT)
    query = "a large blue star goes downward before it expands"
    retriever = VideoRetriever(loaded.model, loaded.processor, show_progress=False)
    retriever.index_videos([record.path for record in engine.gallery],
                           video_ids=[record.video_id for record in engine.gallery])
    expected = {hit.video_id: hit.score for hit in retriever.search(query, k=8)[0]}
    got = {hit.record.video_id: hit.embedding_score
           for hit in engine.search(query, CHECKPOINT, k=8, rank_by="embedding").hits}
    assert list(got) == list(expected)
    assert np.allclose(list(got.values()), list(expected.values()), atol=1e-5)


def test_relevance_has_one_value_per_sampled_frame(engine):
    result = engine.search("a tiny blue square shrinks", CHECKPOINT, k=3, rank_by="embedding")
    relevance, best = result.relevance, result.hits[0]
    num_frames = engine.checkpoint(CHECKPOINT).config.vision_config.num_frames
    assert relevance.video_id == best.record.video_id
    assert len(relevance.cosine) == len(relevance.bypass_share) == len(relevance.frame_times) == num_frames
    assert relevance.frames.shape[0] == num_frames
    # The embedding score is the mean over frames of the per-frame cosine, divided by the mean frame embedding's
    # length when the checkpoint normalises it (video_pooling="normalized_mean").
    loaded = engine.checkpoint(CHECKPOINT)
    frame_embeds = loaded.encode_records([best.record])[0].frame_embeds
    length = float(frame_embeds.mean(dim=0).norm()) if loaded.config.video_pooling == "normalized_mean" else 1.0
    assert np.mean(relevance.cosine) / length == pytest.approx(best.embedding_score, abs=1e-5)
    assert all(0.0 <= share <= 1.0 for share in relevance.bypass_share)
    assert relevance.frame_times == sorted(relevance.frame_times)


def test_unknown_words_are_reported(engine):
    # The checkpoint's WordPiece vocabulary reads any English word (words outside the benchmark included); a
    # character it has no piece for still reads as [UNK] and is reported.
    result = engine.search("A zebra xylophone spins!", CHECKPOINT, k=2)
    assert result.unknown_words == [] and result.cleaned_query == "a zebra xylophone spins"
    result = engine.search("A \u2603 spins!", CHECKPOINT, k=2)
    assert result.unknown_words == ["\u2603"] and result.cleaned_query == "a \u2603 spins"


@pytest.mark.parametrize("query", ["", "   ", "?!"])
def test_empty_query_is_refused(engine, query):
    with pytest.raises(ValueError, match="query"):
        engine.search(query, CHECKPOINT)


def _bad_upload(kind: str, folder: Path) -> tuple[Path, str]:
    """A file of the given kind of badness and the phrase its error must contain."""
    if kind == "extension":
        path = folder / "notes.txt"
        path.write_text("not a video")
        return path, "unsupported file type ('.txt')"
    if kind == "corrupt":
        path = folder / "corrupt.mp4"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return path, "not a readable video"
    if kind == "empty":
        path = folder / "empty.mp4"
        path.write_bytes(b"")
        return path, "empty"
    if kind == "too_large":
        path = folder / "large.mp4"
        path.write_bytes(b"\0" * (LIMITS.max_bytes + 1))
        return path, "the limit is 0.2 MB"
    if kind == "too_long":  # 40 frames at 10 fps = 4 s > 3 s
        return write_grey_video(folder / "long.mp4", num_frames=40, step=5), "long (measured from its timestamps); the limit is 3 s"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["extension", "corrupt", "empty", "too_large", "too_long"])
def test_bad_upload_raises_an_error_naming_file_and_problem(engine, tmp_path, kind):
    path, phrase = _bad_upload(kind, tmp_path)
    with pytest.raises(UploadError) as caught:
        engine.add_upload(path, CHECKPOINT, filename=path.name)
    assert caught.value.filename == path.name
    assert str(caught.value).startswith(f"{path.name}: ") and phrase in str(caught.value)


def test_missing_upload_is_refused(engine):
    with pytest.raises(UploadError, match="no file was received"):
        engine.add_upload(None, CHECKPOINT, filename="clip.mp4")


def test_good_upload_is_indexed_for_its_session_and_found(engine, good_video):
    record, added = engine.add_upload(good_video, CHECKPOINT, filename=good_video.name, video_id="my grey clip")
    assert added and record.source == "upload" and record.video_id == "upload:my_grey_clip"
    assert Path(record.path).parent == engine.session_dir("local") and Path(record.path).read_bytes() == good_video.read_bytes()
    total = len(engine.gallery) + 1
    result = engine.search("a white square", CHECKPOINT, k=total, rank_by="embedding", uploads=[record])
    assert result.num_searched == total
    found = [hit for hit in result.hits if hit.record.video_id == record.video_id]
    assert len(found) == 1
    # Its score is the model's: the query against the video encoded directly.
    loaded = engine.checkpoint(CHECKPOINT)
    with torch.no_grad():
        video = loaded.model.get_video_features(loaded.processor(videos=[str(good_video)])["pixel_values_videos"])
        text = loaded.model.get_text_features(**loaded.processor(text=["a white square"]))
    assert found[0].embedding_score == pytest.approx(float(text[0] @ video[0]), abs=1e-5)
    # Another session (no uploads) does not see it.
    other = engine.search("a white square", CHECKPOINT, k=total, rank_by="embedding")
    assert record.video_id not in {hit.record.video_id for hit in other.hits}
    # The same file again returns the earlier record instead of a duplicate.
    again, added_again = engine.add_upload(good_video, CHECKPOINT, uploads=[record], filename="copy.mp4")
    assert (again, added_again) == (record, False)


def test_uploads_per_session_are_capped(engine, tmp_path):
    uploads = []
    for number in range(LIMITS.max_per_session):
        path = write_grey_video(tmp_path / f"clip{number}.mp4", num_frames=5, step=10 + number)
        uploads.append(engine.add_upload(path, CHECKPOINT, uploads, filename=path.name)[0])
    extra = write_grey_video(tmp_path / "one more.mp4", num_frames=5, step=30)
    with pytest.raises(UploadError, match=r"one more.mp4: this session already added 3 videos"):
        engine.add_upload(extra, CHECKPOINT, uploads, filename=extra.name)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """The committed checkpoint plus a tiny dual encoder (no joint encoder, so no rerank and no bypass)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    os.symlink(CHECKPOINT_DIR, folder / CHECKPOINT)
    torch.manual_seed(0)
    config = tiny_config(fusion_mode="none", vision_config={"num_frames": 2})
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config),
                               tiny_tokenizer(tmp_path_factory.mktemp("vocab")))
    save_hub_folder(T2V2TModel(config), processor, folder / "tiny-dual-encoder")
    return folder


def test_switching_checkpoints_loads_indexes_and_caches(two_checkpoints, tmp_path):
    engine = DemoEngine(two_checkpoints, upload_dir=tmp_path, max_loaded=2)
    assert engine.checkpoint_names() == [CHECKPOINT, "tiny-dual-encoder"]
    steps = []
    dual = engine.checkpoint("tiny-dual-encoder", progress=lambda fraction, desc: steps.append(fraction))
    assert steps[0] == 0.0 and steps[-1] == 1.0 and len(dual.gallery) == len(engine.gallery)
    assert engine.checkpoint("tiny-dual-encoder") is dual  # cached: not loaded or indexed again
    assert not dual.can_rerank and dual.recommended_rank_by == "embedding"
    result = engine.search("a red square", "tiny-dual-encoder", k=3)
    assert [hit.rerank_score for hit in result.hits] == [None] * 3
    assert result.relevance.bypass_share is None and len(result.relevance.cosine) == 2
    with pytest.raises(ValueError, match="dual encoder"):
        engine.search("a red square", "tiny-dual-encoder", rank_by="rerank")
    with pytest.raises(ValueError, match=r"Unknown checkpoint 'nope'.*tiny-dual-encoder"):
        engine.checkpoint("nope")


@pytest.mark.slow
def test_inference_runs_without_the_package(tmp_path):
    """The Space does not install t2v2t: the checkpoint's own code must be enough (trust_remote_code)."""
    script = f"""
import sys
sys.modules["modeling_t2v2t"] = None  # make `import modeling_t2v2t` (and processing) fail, as on the Space
sys.modules["processing"] = None
sys.path[:0] = [{str(SPACE)!r}]
from inference import DemoEngine
engine = DemoEngine(gallery_dir={str(_small_gallery(tmp_path / "gallery", 4))!r}, upload_dir={str(tmp_path)!r})
result = engine.search("a tiny blue square shrinks", k=2, rank_by="rerank")
model_module = type(engine.checkpoint().model).__module__
assert model_module.startswith("transformers_modules."), model_module
print(len(result.hits), result.hits[0].rerank_score is not None)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2", "True"]


# ----- asset preparation ---------------------------------------------------------------------------------------
def _small_gallery(folder: Path, count: int) -> Path:
    """The first `count` videos of the committed gallery (verification cost grows with the gallery)."""
    manifest = json.loads((SPACE / "gallery" / "gallery.json").read_text())
    manifest["videos"] = manifest["videos"][:count]
    folder.mkdir()
    for entry in manifest["videos"]:
        os.symlink(SPACE / "gallery" / entry["file"], folder / entry["file"])
    (folder / "gallery.json").write_text(json.dumps(manifest))
    return folder


def test_prepare_assets_checkpoint_is_deterministic_float16_and_verified(tmp_path):
    first = prepare_assets.build_checkpoint(CHECKPOINT_DIR, tmp_path / "a", "copy")
    second = prepare_assets.build_checkpoint(CHECKPOINT_DIR, tmp_path / "b", "copy")
    files = sorted(path.name for path in first.iterdir())
    assert files == sorted(path.name for path in second.iterdir())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in files)
    assert [path.name for path in (tmp_path / "a").iterdir()] == ["copy"]  # no staging folder left behind
    card = (first / "README.md").read_text()
    metrics = json.loads((CHECKPOINT_DIR / "test_results.json").read_text())
    assert f"| embedding | text→video | {metrics['test_embedding_t2v_R1']:.1f} |" in card
    assert "Retrieval on the test split of `synthetic`" in card
    worst = prepare_assets.verify(CHECKPOINT_DIR, first, _small_gallery(tmp_path / "gallery", 6), tolerance=1e-2)
    assert worst["embedding"] < 1e-4  # float16 -> float16: identical weights


def test_prepare_assets_converts_floats_to_float16_and_keeps_integers(tmp_path):
    from safetensors.torch import save_file

    source = tmp_path / "in.safetensors"
    save_file({"w": torch.randn(4, 4), "ids": torch.arange(3)}, str(source))
    prepare_assets.convert_weights(source, tmp_path / "out.safetensors")
    with safe_open(str(tmp_path / "out.safetensors"), framework="pt") as weights:
        assert weights.get_tensor("w").dtype == torch.float16
        assert torch.equal(weights.get_tensor("ids"), torch.arange(3))
    save_file({"w": torch.full((2,), 1e6)}, str(source))
    with pytest.raises(ValueError, match="float16 range"):
        prepare_assets.convert_weights(source, tmp_path / "out.safetensors")


# ----- the app, served ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(engine):
    demo = app.build_demo(engine)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                            ssr_mode=False, **app.launch_kwargs(engine))
    yield url
    demo.close()


@pytest.mark.slow
def test_app_search_endpoint_through_gradio_client(server, engine):
    from gradio_client import Client

    client = Client(server, verbose=False)
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/search", "/add_video", "/switch_checkpoint"} <= set(endpoints)
    query = "We see a large blue box that gets smaller."
    gallery, table, best_video, frames, cosine, bypass, status, overlay, words, _ = client.predict(
        query, CHECKPOINT, 4, "rerank", api_name="/search")
    expected = engine.search(query, CHECKPOINT, k=4, rank_by="rerank")
    assert [row[1] for row in table["data"]] == [hit.record.video_id for hit in expected.hits]
    reranked = [row[4] for row in table["data"]]
    assert reranked == sorted(reranked, reverse=True)
    assert table["headers"] == app.TABLE_HEADERS and len(gallery) == 4
    assert Path(best_video).name == Path(expected.hits[0].record.path).name
    num_frames = engine.checkpoint(CHECKPOINT).config.vision_config.num_frames
    assert len(frames) == len(cosine["value"]["data"]) == len(bypass["value"]["data"]) == num_frames
    assert "ranked by **rerank**" in status
    # The patch-attention overlay of the best match and its table of highlighted patches and their words.
    assert overlay["visible"] and Image.open(overlay["value"]).size[0] >= num_frames * 64
    words = words["value"]
    assert words["headers"] == app.ATTENTION_HEADERS and len(words["data"]) == app.HIGHLIGHTED_PATCHES
    query_words = set(inference.clean_query(query).split())
    assert all({item.split()[0] for item in row[4].split(", ")} <= query_words for row in words["data"])
    info, rank_by, message = client.predict(CHECKPOINT, api_name="/switch_checkpoint")
    assert f"**{CHECKPOINT}**" in info and "loaded" in message
    assert rank_by["value"] == engine.checkpoint(CHECKPOINT).recommended_rank_by


@pytest.mark.slow
def test_app_upload_through_gradio_client(server, good_video):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    message, uploads = client.predict(handle_file(str(good_video)), "ramp", CHECKPOINT, api_name="/add_video")
    assert "Added **upload:ramp**" in message and uploads["data"][0][0] == "upload:ramp"
    total = len(json.loads((SPACE / "gallery" / "gallery.json").read_text())["videos"]) + 1
    # The same client is the same session: its search covers the upload.
    status = client.predict("a grey square", CHECKPOINT, 1, "embedding", api_name="/search")[6]
    assert f"Searched {total} videos (1 uploaded by you)" in status
    corrupt = good_video.parent / "broken.mp4"
    corrupt.write_bytes(b"\0\1\2" * 500)
    with pytest.raises(AppError, match="broken.mp4: this is not a readable video"):
        client.predict(handle_file(str(corrupt)), "", CHECKPOINT, api_name="/add_video")


class _ChromiumPipe:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on fd 3,
    replies on fd 4, NUL-separated JSON), so no websocket client or browser download is needed."""

    def __init__(self, url: str, profile: Path, width: int = 1280, height: int = 2400):
        to_read, self._write = os.pipe()
        self._read, from_write = os.pipe()
        args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", url]
        # bash puts the pipe ends on the fds 3 and 4 that Chromium expects.
        command = "exec " + " ".join(map(shlex.quote, args)) + f" 3<&{to_read} 4>&{from_write}"
        self.process = subprocess.Popen(["bash", "-c", command], pass_fds=(to_read, from_write),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_read)
        os.close(from_write)
        self._buffer, self._id, self.session = b"", 0, None

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._read], [], [], left)[0]:
                    raise TimeoutError(f"Chromium did not answer {method} within {timeout} s.")
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe during {method}.")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:  # events and other replies are skipped
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def attach_to_page(self) -> None:
        page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=5)
            self.process.wait(10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only the browser we started
            self.process.wait()
        finally:
            os.close(self._write)
            os.close(self._read)


OVERLAY_STATE = """(() => {
  const img = document.querySelector('#patch-attention img');
  const heads = [...document.querySelectorAll('#results-table th')].map(th => th.getBoundingClientRect().height);
  const caption = document.querySelector('#results-gallery .caption-label, #results-gallery figcaption');
  return {loaded: !!(img && img.complete && img.naturalWidth > 0), width: img ? img.naturalWidth : 0,
          src: img ? img.src : '', headerHeights: heads,
          captionFont: caption ? parseFloat(getComputedStyle(caption).fontSize) : 0,
          rect: img ? (r => [r.x, r.y + window.scrollY, r.width, r.height])(img.getBoundingClientRect()) : null};
})()"""


@pytest.mark.slow
def test_browser_screenshot_after_query(server, engine, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: run spaces_demo/install_chromium.sh (make test does).")
    query = "A small blue square fades out after a small blue triangular shape spins around."
    expected = [hit.record.video_id for hit in engine.search(query, CHECKPOINT, k=5).hits]
    shots = Path(os.environ.get("T2V2T_DEMO_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser = _ChromiumPipe(f"{server}?q={query.replace(' ', '+')}", tmp_path / "profile")
    try:
        browser.attach_to_page()
        deadline, text, state = time.monotonic() + 60, "", {}
        while time.monotonic() < deadline:  # the page runs the ?q= query as it loads
            text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
            state = browser.evaluate(OVERLAY_STATE) or {}
            if all(video_id in text for video_id in expected) and state.get("loaded"):
                break
            time.sleep(0.3)
        time.sleep(0.5)  # let images and plots paint
        png = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png",
                                                                        "captureBeyondViewport": True})["data"])
        state = browser.evaluate(OVERLAY_STATE) or {}
        overlay_png = None
        if state.get("rect"):
            x, y, width, height = state["rect"]
            overlay_png = base64.b64decode(browser.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1}})["data"])
        dom = browser.evaluate("document.documentElement.outerHTML")
    finally:
        browser.close()
    (shots / "screenshot.png").write_bytes(png)
    logger.info("Screenshot at %s", shots / "screenshot.png")
    for video_id in expected:
        assert video_id in dom, f"{video_id} (a top-5 result) is not in the page after the query"
    assert f"Searched {len(engine.gallery)} videos" in text and "ranked by" in text
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape[1] == 1280 and image.shape[0] > 1000
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 500  # not blank: text, frames, plots
    # The patch-attention overlay appeared after the query, as an image the browser loaded, with its word table.
    assert state.get("loaded") and state["width"] >= 4 * 64, state
    assert "Outlined patches: the words they attended to most" in text
    (shots / "overlay.png").write_bytes(overlay_png)
    overlay = np.asarray(Image.open(io.BytesIO(overlay_png)).convert("RGB")).astype(int)
    red, green, blue = overlay[..., 0], overlay[..., 1], overlay[..., 2]
    orange = (red - blue > 80) & (red > green) & (green > blue)
    assert orange.mean() > 0.01, "no orange (text-intake) tint in the overlay as displayed"
    # Column headers on one line (all the same height), and the result tiles' score captions at >= 13 px.
    heights = state["headerHeights"]
    assert heights and max(heights) - min(heights) < 2 and max(heights) < 48, heights
    assert state["captionFont"] >= 13, state


@pytest.fixture(scope="module")
def fusion_depths(tmp_path_factory) -> Path:
    """The committed checkpoint plus tiny T2V2T models with one and two text→video layers (a joint-encoder cache
    exists only for one)."""
    folder = tmp_path_factory.mktemp("fusion_depths")
    os.symlink(CHECKPOINT_DIR, folder / CHECKPOINT)
    for layers in (1, 2):
        torch.manual_seed(0)
        config = tiny_config(num_t2v_layers=layers, vision_config={"num_frames": 2})
        processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config),
                                   tiny_tokenizer(tmp_path_factory.mktemp("vocab")))
        save_hub_folder(T2V2TModel(config), processor, folder / f"tiny-t2v-{layers}")
    return folder


@pytest.mark.parametrize("name", [CHECKPOINT, "tiny-t2v-1", "tiny-t2v-2"])
def test_gallery_reranks_exactly_like_the_reference_path(fusion_depths, tmp_path, name):
    """Gallery videos carry their per-video joint-encoder work when the model has it (at most one text→video
    layer), and reranking, from it or not, gives the straightforward (uncached) joint encoder's scores."""
    loaded = DemoEngine(fusion_depths, upload_dir=tmp_path).checkpoint(name)
    videos = loaded.gallery[:6]
    cacheable = loaded.model.supports_joint_cache
    if name != CHECKPOINT:
        assert cacheable == (name == "tiny-t2v-1")
    assert all(bool(video.joint_cache) == cacheable for video in videos)
    if cacheable:
        assert all("fusion_keys" in video.joint_cache for video in videos)
    text = loaded.encode_text("a small blue box that grows")
    cached = loaded.rerank_scores(text, videos)
    with torch.no_grad():
        reference = loaded.model.score_pairs(
            text_encoding=text.select(torch.zeros(len(videos), dtype=torch.long)),
            video_encoding=loaded._encoding_class(
                video_tokens=torch.stack([video.video_tokens for video in videos]),
                video_embeds=torch.stack([video.video_embed for video in videos])),
            use_joint_cache=False).scores.float()
    assert torch.allclose(torch.tensor(cached), reference, rtol=1e-4, atol=1e-4)
