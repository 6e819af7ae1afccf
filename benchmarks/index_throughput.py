"""Indexing throughput of `t2v2t index` with 1 and 2 processes, as a markdown table.

It copies the demo gallery (`spaces_demo/gallery`, 64x64 16-frame clips) until `--num-videos` files exist in a
temporary folder, then runs the real command with the demo checkpoint, once with 1 plain process and once per extra
process count under `accelerate launch` (CPU processes over gloo, or `--gpu` for one process per GPU), each
`--repeats` times, and reports:

- **wall s**: the whole command (interpreter start, imports, model loading, indexing, merge, save);
- **index s**: `IndexingSummary.seconds`, from the video list to the saved merged index (model already loaded);
- **videos/s**: videos / index s;
- **encode s per process**: each process decoding and encoding its slice (their spread shows the load balance).

Every process is given `--threads` torch/OpenMP threads (default 1), so 2 processes use twice the cores of one. On
a machine whose cores are shared with other work the numbers are noisy: compare rows of one run, not runs.

Run from the repository root:

    python -m benchmarks.index_throughput --num-videos 256 --processes 1 2
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "spaces_demo" / "checkpoints" / "t2v2t-synthetic-quickstart"
GALLERY = ROOT / "spaces_demo" / "gallery"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=256, help="videos to index (copies of the demo gallery)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--repeats", type=int, default=2, help="runs per process count (the table shows the median)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per process")
    parser.add_argument("--model", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--gpu", action="store_true", help="one process per GPU instead of CPU processes")
    return parser.parse_args(argv)


def make_videos(folder: Path, count: int) -> None:
    sources = sorted(GALLERY.glob("*.mp4"))
    for number in range(count):
        source = sources[number % len(sources)]
        shutil.copy(source, folder / f"{number:06d}_{source.name}")


def command_for(processes: int, gpu: bool) -> list[str]:
    module = ["-m", "modeling_t2v2t.retrieval.cli", "index"]
    if processes == 1:
        return [sys.executable, *module] + ([] if gpu else ["--cpu"])
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu"]
    return [*launch, *module] + ([] if gpu else ["--cpu"])


def run_once(processes: int, args, videos: Path, work: Path) -> dict:
    out = work / f"index_{processes}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = command_for(processes, args.gpu) + [str(videos), "--model", args.model, "--out", str(out), "--json",
                                                  "--no-progress", "--batch-size", str(args.batch_size)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    summary = json.loads(result.stdout)
    shutil.rmtree(out)
    return {**summary, "wall_seconds": wall}


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="t2v2t_index_bench_") as temp:
        work = Path(temp)
        videos = work / "videos"
        videos.mkdir()
        make_videos(videos, args.num_videos)
        rows = []
        for processes in args.processes:
            runs = [run_once(processes, args, videos, work) for _ in range(args.repeats)]
            assert all(run["num_indexed"] == args.num_videos for run in runs), "videos were skipped"
            median = lambda key: statistics.median(run[key] for run in runs)  # noqa: E731
            index_seconds = median("seconds")
            encode = [statistics.median(run["encode_seconds"][rank] for run in runs) for rank in range(processes)]
            rows.append((processes, median("wall_seconds"), index_seconds, args.num_videos / index_seconds, encode))
    print(f"Indexing {args.num_videos} videos (16 frames, 64x64; the demo checkpoint samples 4) with "
          f"{Path(args.model).name}; {args.threads} thread(s) per process, batch {args.batch_size}, "
          f"{'GPU' if args.gpu else 'CPU'}; median of {args.repeats} run(s); {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical cores.\n")
    print("| processes | wall s | index s | videos/s | speed-up | encode s per process |")
    print("|---:|---:|---:|---:|---:|---|")
    base = rows[0][3]
    for processes, wall, index_seconds, rate, encode in rows:
        print(f"| {processes} | {wall:.1f} | {index_seconds:.2f} | {rate:.1f} | {rate / base:.2f}x | "
              f"{', '.join(f'{value:.2f}' for value in encode)} |")


if __name__ == "__main__":
    main()
