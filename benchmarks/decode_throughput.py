"""Decoding throughput of `processing.decoding.decode_clip` per backend, printed as a markdown table.

Writes MSR-VTT-like clips (h264 mp4, 320x240, 30 fps, 10 s, panning textures with a scene cut every few seconds)
into a temporary folder, then for each backend and frame count measures clips/s of (a) decoding the sampled frames
and (b) decoding plus `T2V2TVideoProcessor` preprocessing to `pixel_values_videos`. The "pyav, decode all + pick"
row decodes every frame and keeps the sampled ones: what seeking saves. Each number is the best of `--repeats`
timed passes over all clips, after one warm-up clip. It also checks that every backend returns identical frames.

Run from the repository root:

    python -m benchmarks.decode_throughput --num-clips 20 --frames 8 12
"""

import argparse
import os
import platform
import tempfile
import time

import av
import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_t2v2t import T2V2TVideoProcessor
from processing.decoding import BACKENDS, available_backends, decode_clip, probe_video, sample_frame_indices

NAIVE = "pyav, decode all + pick"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-clips", type=int, default=20, help="clips to generate and decode")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--gop", type=int, default=250, help="max frames between keyframes (x264's default: 250)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 12], help="frame counts to sample")
    parser.add_argument("--size", type=int, default=224, help="preprocessed frame size (square)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per cell; the best is reported")
    return parser.parse_args(argv)


def write_clip(path: str, seed: int, args: argparse.Namespace) -> None:
    """A textured scene panning at a steady speed, with a new scene every 2-4 s (x264 may start a keyframe at a cut)."""
    rng = np.random.default_rng(seed)
    num_frames = round(args.seconds * args.fps)
    scene_length = int(args.fps * rng.uniform(2, 4))
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=args.fps)
        stream.width, stream.height, stream.pix_fmt = args.width, args.height, "yuv420p"
        stream.options = {"g": str(args.gop)}
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


def decode_all_and_pick(path: str, num_frames: int) -> np.ndarray:
    """The naive way: decode every frame in order, convert the sampled ones."""
    indices = sample_frame_indices(probe_video(path).num_frames, num_frames)
    wanted, frames = set(indices.tolist()), {}
    with av.open(path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24", threads=1)
    return np.stack([frames[index] for index in indices])


def clips_per_second(function, paths: list[str], repeats: int) -> float:
    function(paths[0])  # warm-up: imports, decoder set-up, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            function(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main(argv=None) -> None:
    args = parse_args(argv)
    backends = [backend for backend in args.backends if backend in available_backends()]
    for backend in sorted(set(args.backends) - set(backends)):
        print(f"Note: backend {backend!r} is not installed here; skipped.")

    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, f"video{index}.mp4") for index in range(args.num_clips)]
        for seed, path in enumerate(tqdm(paths, desc="Writing clips", unit="clip")):
            write_clip(path, seed, args)
        info = probe_video(paths[0])
        keyframes = np.mean([count_keyframes(path) for path in paths])
        size_kb = sum(os.path.getsize(path) for path in paths) / len(paths) / 1024

        # Every backend must give the frames PyAV gives.
        mismatches = [
            (backend, path, num_frames)
            for backend in backends
            for num_frames in args.frames
            for path in paths
            if not np.array_equal(decode_clip(path, num_frames, backend=backend), decode_clip(path, num_frames))
        ]
        if "pyav" in backends:
            mismatches += [
                (NAIVE, path, num_frames)
                for num_frames in args.frames
                for path in paths
                if not np.array_equal(decode_all_and_pick(path, num_frames), decode_clip(path, num_frames))
            ]

        rows = []
        methods = [(backend, backend) for backend in backends] + ([(NAIVE, None)] if "pyav" in backends else [])
        cells = [(name, backend, n) for n in args.frames for name, backend in methods]
        for name, backend, num_frames in tqdm(cells, desc="Timing", unit="cell"):
            processor = T2V2TVideoProcessor(num_frames=num_frames, size={"height": args.size, "width": args.size})
            if backend is None:
                decode = lambda path, n=num_frames: decode_all_and_pick(path, n)  # noqa: E731
            else:
                decode = lambda path, b=backend, n=num_frames: decode_clip(path, n, backend=b)  # noqa: E731

            def decode_and_preprocess(path, decode=decode, processor=processor):
                # The clip already has num_frames frames: no second sampling.
                return processor(decode(path), do_sample_frames=False)["pixel_values_videos"]

            rows.append(
                (
                    name,
                    num_frames,
                    clips_per_second(decode, paths, args.repeats),
                    clips_per_second(decode_and_preprocess, paths, args.repeats),
                )
            )

    naive = {num_frames: decoded for name, num_frames, decoded, _ in rows if name == NAIVE}
    print(
        f"\n{args.num_clips} clips: h264 mp4, {info.width}x{info.height}, {info.fps:g} fps, {info.num_frames} frames "
        f"({info.duration:g} s), {keyframes:.1f} keyframes and {size_kb:.0f} KiB per clip (--gop {args.gop}); "
        f"'middle' sampling; preprocess to {args.size}x{args.size}. {os.cpu_count()} CPU cores, torch threads "
        f"{torch.get_num_threads()}, Python {platform.python_version()}, PyAV {av.__version__}."
    )
    print(f"Best of {args.repeats} passes over all clips, after one warm-up clip.\n")
    print("| backend | frames | decode (clips/s) | decode ms/clip | vs decode all | decode + preprocess (clips/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, num_frames, decoded, processed in rows:
        speedup = f"{decoded / naive[num_frames]:.1f}x" if num_frames in naive else "n/a"
        print(f"| {name} | {num_frames} | {decoded:.1f} | {1000 / decoded:.1f} | {speedup} | {processed:.1f} |")
    if mismatches:
        print(f"\nWARNING: {len(mismatches)} (backend, clip, frames) gave frames different from PyAV: {mismatches[:5]}")
    else:
        print(f"\nAll methods returned frames identical to PyAV's for every clip and frame count ({', '.join(backends)}).")


if __name__ == "__main__":
    main()
