"""Decoding throughput of `processing.decoding.decode_clip`: seeking vs one forward pass, per clip layout, printed as
a markdown table.

Writes MSR-VTT-like clips (h264, 320x240, 30 fps, 10 s, panning textures with a scene cut every few seconds) in
four layouts: mp4 and mkv, each with few keyframes (x264's default --gop 250: 2 per clip) and many (--gop 15). An
mkv header has no frame count: the frame count and the keyframes come from a packet scan.
For each layout it times, interleaved within each pass so a busy machine slows every method alike:

- `auto (default)`: `decode_clip(path, n)`, which picks seeking or one pass from the keyframe layout;
- `seek`: `strategy="seek"`, to the keyframe before each sampled frame;
- `one pass`: `strategy="sequential"`, decoding from the start up to the last sampled frame;
- `decode all + pick`: decoding every frame and keeping the sampled ones (the naive way), with one decoding thread
  as the library uses, and with FFmpeg's automatic threads (`--threads 0`: frame threads on every core);
- `auto, FFmpeg threads`: the default path with `threads=0` as well, for a like-for-like comparison with the last.

The library decodes with one thread by default because DataLoader workers already decode clips in parallel; on a
multi-core machine a single process decoding one clip at a time gains from FFmpeg's threads whichever the strategy.

Each number is the best of `--repeats` timed passes over all clips, after one warm-up clip. Wall-clock clips/s is
what a user sees; process CPU time per clip is what a busy, shared machine measures more steadily (the methods with
one decoding thread use one core, so the two agree on an idle machine). The `vs best` columns are each method's
speed relative to the faster of `seek` and `one pass`. Every method must return the same frames.
Other installed backends (torchcodec, decord) get a row on the first layout.

Run from the repository root:

    python -m benchmarks.decode_throughput --num-clips 10 --frames 8
"""

import argparse
import os
import platform
import random
import tempfile
import time

import av
import numpy as np
import torch
from tqdm.auto import tqdm

from processing.decoding import available_backends, decode_clip, probe_video, sample_frame_indices

LAYOUTS = {  # name: (container suffix, --gop)
    "mp4, few keyframes": (".mp4", 250),
    "mp4, many keyframes": (".mp4", 15),
    "mkv, few keyframes": (".mkv", 250),
    "mkv, many keyframes": (".mkv", 15),
}
AUTO, SEEK, ONE_PASS = "auto (default)", "seek", "one pass"
NAIVE, NAIVE_THREADS = "decode all + pick (1 thread)", "decode all + pick (FFmpeg threads)"
AUTO_THREADS = "auto, FFmpeg threads"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-clips", type=int, default=10, help="clips per layout")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--many-gop", type=int, default=15, help="max frames between keyframes, many-keyframe clips")
    parser.add_argument("--frames", type=int, nargs="+", default=[8], help="frame counts to sample")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per method; the best is reported")
    parser.add_argument("--threads", type=int, default=0, help="decoding threads of the threaded rows (0 = auto)")
    parser.add_argument("--seed", type=int, default=0, help="order of the interleaved methods")
    return parser.parse_args(argv)


def write_clip(path: str, seed: int, gop: int, args: argparse.Namespace) -> None:
    """A textured scene panning at a steady speed, with a new scene every 2-4 s (x264 may start a keyframe at a cut)."""
    rng = np.random.default_rng(seed)
    num_frames = round(args.seconds * args.fps)
    scene_length = int(args.fps * rng.uniform(2, 4))
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=args.fps)
        stream.width, stream.height, stream.pix_fmt = args.width, args.height, "yuv420p"
        stream.options = {"g": str(gop)}
        for index in range(num_frames):
            if index % scene_length == 0:
                # A smooth colour texture twice the frame size (blocky noise upsampled), panned across.
                coarse = rng.integers(0, 256, (args.height // 8, args.width // 8, 3), dtype=np.uint8)
                texture = coarse.repeat(16, 0).repeat(16, 1)
                speed = rng.integers(1, 4, size=2)
            dy, dx = (speed * (index % scene_length)) % (args.height, args.width)
            frame = texture[dy : dy + args.height, dx : dx + args.width]
            frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)  # sensor noise
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def count_keyframes(path: str) -> int:
    with av.open(path) as container:
        return sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)


def decode_all_and_pick(path: str, num_frames: int, threads: int = 1) -> np.ndarray:
    """The naive way: decode every frame in order, convert the sampled ones."""
    indices = sample_frame_indices(probe_video(path).num_frames, num_frames)
    wanted, frames = set(indices.tolist()), {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads  # 0: FFmpeg picks (frame threads on every core)
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24", threads=1)
    return np.stack([frames[index] for index in indices])


def methods(num_frames: int, threads: int, backends: list[str], first_layout: bool) -> dict:
    table = {
        AUTO: lambda path: decode_clip(path, num_frames),
        SEEK: lambda path: decode_clip(path, num_frames, strategy="seek"),
        ONE_PASS: lambda path: decode_clip(path, num_frames, strategy="sequential"),
        NAIVE: lambda path: decode_all_and_pick(path, num_frames),
        NAIVE_THREADS: lambda path: decode_all_and_pick(path, num_frames, threads),
        AUTO_THREADS: lambda path: decode_clip(path, num_frames, threads=threads),
    }
    for backend in backends if first_layout else []:
        table[backend] = lambda path, backend=backend: decode_clip(path, num_frames, backend=backend)
    return table


def time_interleaved(table: dict, paths: list[str], repeats: int, rng: random.Random) -> dict[str, tuple]:
    """`(wall clips/s, CPU ms per clip)` of each method: best of `repeats` passes each, the methods in a new random
    order every pass."""
    for function in table.values():  # warm-up: imports, decoder set-up, caches
        function(paths[0])
    wall = {name: float("inf") for name in table}
    cpu = dict(wall)
    for _ in range(repeats):
        order = list(table)
        rng.shuffle(order)
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            for path in paths:
                table[name](path)
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return {name: (len(paths) / wall[name], 1000 * cpu[name] / len(paths)) for name in table}


def main(argv=None) -> None:
    args = parse_args(argv)
    backends = [backend for backend in available_backends() if backend != "pyav"]
    rng = random.Random(args.seed)
    rows, mismatches, notes = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for layout_number, (layout, (suffix, gop)) in enumerate(LAYOUTS.items()):
            gop = args.many_gop if "many" in layout else gop
            paths = [os.path.join(folder, f"{suffix[1:]}{gop}_{index}{suffix}") for index in range(args.num_clips)]
            for seed, path in enumerate(tqdm(paths, desc=f"Writing {layout} clips", unit="clip", leave=False)):
                write_clip(path, seed, gop, args)
            keyframes = np.mean([count_keyframes(path) for path in paths])
            info = probe_video(paths[0])
            notes.append(f"{layout}: {info.width}x{info.height}, {info.num_frames} frames, {keyframes:.1f} keyframes "
                         f"per clip (--gop {gop}), {info.format}")
            for num_frames in args.frames:
                table = methods(num_frames, args.threads, backends, layout_number == 0)
                reference = [decode_clip(path, num_frames) for path in paths]
                mismatches += [(layout, name, num_frames) for name, function in table.items()
                               if not all(np.array_equal(function(path), frames)
                                          for path, frames in zip(paths, reference))]
                speeds = time_interleaved(table, paths, args.repeats, rng)
                fastest = max(speeds[SEEK][0], speeds[ONE_PASS][0])
                cheapest = min(speeds[SEEK][1], speeds[ONE_PASS][1])
                for name, (speed, cpu_ms) in speeds.items():
                    rows.append((layout, name, num_frames, speed, speed / fastest, cpu_ms, cheapest / cpu_ms))

    print(f"\n{args.num_clips} clips per layout, 'middle' sampling. {os.cpu_count()} CPU cores, torch threads "
          f"{torch.get_num_threads()}, Python {platform.python_version()}, PyAV {av.__version__}.")
    for note in notes:
        print(f"- {note}")
    print(f"Best of {args.repeats} interleaved passes over all clips, after one warm-up clip per method.\n")
    print("| clips | method | frames | clips/s (wall) | vs best (wall) | CPU ms/clip | vs best (CPU) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for layout, name, num_frames, speed, relative, cpu_ms, cpu_relative in rows:
        shown = f"**{name}**" if name == AUTO else name
        print(f"| {layout} | {shown} | {num_frames} | {speed:.1f} | {relative:.2f} | {cpu_ms:.1f} | "
              f"{cpu_relative:.2f} |")
    if mismatches:
        print(f"\nWARNING: methods returned frames different from decode_clip's: {mismatches}")
    else:
        print("\nEvery method returned the same frames as decode_clip for every clip.")


if __name__ == "__main__":
    main()
