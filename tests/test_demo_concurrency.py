"""20 concurrent searches against the launched Space (through gradio_client, on 127.0.0.1) finish with 0 failures,
including the download of every result image (the step that failed when images were rewritten while served)."""

import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

SPACE = Path(__file__).resolve().parents[1] / "spaces_demo"

import app  # noqa: E402
from inference import DemoEngine  # noqa: E402

logger = logging.getLogger(__name__)
CHECKPOINT = "t2v2t-synthetic-quickstart"
USERS = 20
QUERIES = ["a small blue square fades out", "a large red star spins", "We see a large blue box that gets smaller."]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_twenty_concurrent_searches_all_succeed(tmp_path):
    from gradio_client import Client

    engine = DemoEngine(upload_dir=tmp_path / "uploads", media_dir=tmp_path / "media")
    engine.checkpoint(CHECKPOINT)
    demo = app.build_demo(engine)
    demo.queue(default_concurrency_limit=app.SEARCH_CONCURRENCY)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                            ssr_mode=False, **app.launch_kwargs(engine))
    try:
        clients = [Client(url, verbose=False, download_files=str(tmp_path / f"client{i}")) for i in range(USERS)]
        start = threading.Barrier(USERS)
        latencies, failures, results = [None] * USERS, [], [None] * USERS

        def user(number):
            start.wait()
            began = time.perf_counter()
            try:
                # Same query for most users: they race for the same result images.
                query = QUERIES[0] if number % 4 else QUERIES[number // 4 % len(QUERIES)]
                results[number] = clients[number].predict(query, CHECKPOINT, 5, "rerank", api_name="/search")
            except Exception as error:  # counted, not raised: the test reports every failure
                failures.append(f"user {number}: {type(error).__name__}: {error}")
            latencies[number] = time.perf_counter() - began

        threads = [threading.Thread(target=user, args=(number,)) for number in range(USERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        demo.close()
    done = [latency for latency in latencies if latency is not None]
    p50, p95 = np.percentile(done, 50), np.percentile(done, 95)
    summary = (f"{USERS} concurrent searches: {len(failures)} failures, p50 {p50:.2f} s, p95 {p95:.2f} s, "
               f"max {max(done):.2f} s (concurrency limit {app.SEARCH_CONCURRENCY})")
    logger.info(summary)
    print(summary)
    assert not failures, "\n".join(failures)
    assert len(done) == USERS
    for result in results:  # every result image arrived whole: a PNG that decodes
        from PIL import Image

        gallery = result[0]
        assert len(gallery) == 5
        for item in gallery:
            with Image.open(item["image"]) as image:
                image.load()
