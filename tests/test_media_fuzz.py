"""Fuzzing the media error contract (issue 13, point 1): seeded byte mutations of a small mp4 and a small mkv go to
`decode_clip` and to the video processor, in subprocesses with a per-file timeout. Every file either decodes or
raises `VideoDecodeError` naming it: no other exception, no crash, no hang."""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from broken_media import mutate, write_small_video

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "media_fuzz_worker.py"
SEED = 13  # fixed: the same mutations every run
MUTATIONS_PER_FORMAT = 200
ITEM_TIMEOUT_S = 30  # generous: the machine running the suite may be busy; a good file takes ~10 ms
NUM_WORKERS = 2


def _mutated_files(folder: Path) -> list[str]:
    rng = np.random.default_rng(SEED)
    paths = []
    for suffix in ("mp4", "mkv"):
        original = write_small_video(folder / f"original.{suffix}").read_bytes()
        for number in range(MUTATIONS_PER_FORMAT):
            path = folder / f"mutant{number:03d}.{suffix}"
            path.write_bytes(mutate(original, rng))
            paths.append(str(path))
    return paths


def _run_shard(paths: list[str], manifest: Path) -> tuple[dict[int, dict], dict[int, str]]:
    """Results per file index, and the files whose worker hung or crashed. A worker that dies is replaced by one
    starting after the file it died on."""
    manifest.write_text(json.dumps(paths))
    results, failures, start = {}, {}, 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    while start < len(paths):
        process = subprocess.run(
            [sys.executable, str(WORKER), str(manifest), str(start), str(ITEM_TIMEOUT_S)],
            capture_output=True, text=True, env=env, cwd=ROOT,
            # the watchdog inside ends a hung item; this bound only catches a worker that hangs outside an item
            timeout=ITEM_TIMEOUT_S * (len(paths) - start) + 120,
        )
        current = None
        for line in process.stdout.splitlines():
            if line.startswith("START "):
                current = int(line.split()[1])
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
                results[result["index"]] = result
                current = None
        if current is None:
            assert process.returncode == 0, process.stderr[-2000:]
            break
        hung = "Timeout (" in process.stderr
        failures[current] = f"{'hang' if hung else 'crash'} (exit {process.returncode}): {process.stderr[-500:]}"
        start = current + 1
    return results, failures


@pytest.mark.slow
def test_mutated_mp4_and_mkv_files_either_decode_or_raise_the_contract_error(tmp_path):
    started = time.perf_counter()
    paths = _mutated_files(tmp_path)
    assert len(paths) == 2 * MUTATIONS_PER_FORMAT
    shards = [paths[offset::NUM_WORKERS] for offset in range(NUM_WORKERS)]
    with ThreadPoolExecutor(NUM_WORKERS) as pool:
        outcomes = list(pool.map(lambda item: _run_shard(item[1], tmp_path / f"manifest{item[0]}.json"),
                                 enumerate(shards)))
    counts, escaped, unnamed, failures = Counter(), [], [], []
    for shard, (results, shard_failures) in zip(shards, outcomes):
        failures += [(shard[index], reason) for index, reason in shard_failures.items()]
        for index, result in results.items():
            for entry in ("decode_clip", "processor"):
                outcome = result[entry]
                suffix = Path(shard[index]).suffix
                counts[(suffix, entry, outcome["result"])] += 1
                if outcome["result"] not in ("ok", "VideoDecodeError"):
                    escaped.append((shard[index], entry, outcome))
                elif outcome["result"] == "VideoDecodeError" and not outcome["names_file"]:
                    unnamed.append((shard[index], entry, outcome))
    summary = ", ".join(f"{suffix} {entry} {result}: {count}"
                        for (suffix, entry, result), count in sorted(counts.items()))
    print(f"\n{len(paths)} mutated files in {time.perf_counter() - started:.1f} s: {summary}; "
          f"{len(failures)} hangs/crashes")
    assert not failures, failures[:3]
    assert not escaped, escaped[:5]
    assert not unnamed, unnamed[:5]
    assert sum(counts.values()) == 2 * len(paths)  # every file reached both entry points
    # The mutations must exercise the error path, not only flip bytes the decoder never reads.
    assert sum(count for (_, _, result), count in counts.items() if result == "VideoDecodeError") >= 100
