"""
The built-in synthetic text-video retrieval benchmark: procedurally rendered mp4 videos with VindLU-format
annotations, the embedded default that tests, the demo and the quickstart use offline.

It is hard where text-video retrieval is hard (see `processing.synthetic.scenes`): several paraphrased captions per
video; families of videos that differ in exactly one described factor (an object's colour, shape or size, one
motion, or the order of two events); partial captions that describe one of two events; a paragraph variant; and
undescribed nuisances (textured, panning backgrounds, an unmentioned distractor object, jitter, noise).

Command line (N is the number of *train* videos; val and test default to N//8 and N//4):

    python -m processing.synthetic.benchmark --out DIR --num-videos N --seed S [--num-val V] [--num-test T] \
        [--frames 16] [--size 64] [--fps 8] [--workers 2]

Python:

```python
>>> from processing.synthetic.benchmark import ensure_benchmark
>>> bench = ensure_benchmark("/tmp/t2v2t_synthetic", num_videos=64, seed=0)  # renders only the first time
>>> bench["annotations"]["test"], bench["video_root"]
('/tmp/t2v2t_synthetic/annotations/test.json', '/tmp/t2v2t_synthetic')
```

Output layout:

    DIR/videos/{train,val,test}/<split>_<index>.mp4     H.264 yuv420p
    DIR/annotations/{train,val,test}.json               [{"video": "videos/<split>/<name>.mp4", "caption": [...]}]
    DIR/annotations/{train,val,test}_paragraph.json     caption = one sentence per event (join them)
    DIR/metadata.json                                   per video: family, factor, scene, which captions are partial
    DIR/README.md                                       what this is and the command that made it
    DIR/manifest.json                                   settings + file list; written last (= render complete)

Everything is deterministic given the seed: scenes come from one generator per split, captions and pixels from a
generator per video seeded with (seed, split, index), so the output does not depend on the number of workers.
"""

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from .captions import describe
from .render import render_video
from .scenes import DescriptionIndex, event_claims, sample_family

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
# Bump when the grammar or the renderer changes what a given seed produces: `ensure_benchmark` then re-renders.
GENERATOR_VERSION = 2  # 2: val/test annotation files hold only unambiguous captions
DEFAULT_NUM_VIDEOS = 256
MANIFEST = "manifest.json"
_VIDEO_NAME = re.compile(r"^(train|val|test)_\d+\.mp4(\.tmp)?$")
# Stream tags mixed into the seed so that scenes, captions and pixels draw from independent generators.
_SCENES, _CAPTIONS, _PIXELS = 0, 1, 2


@dataclass(frozen=True)
class BenchmarkSettings:
    """Everything that determines the benchmark's content; stored in the manifest and compared by `ensure_benchmark`."""

    num_videos: int
    seed: int = 0
    num_val: int | None = None
    num_test: int | None = None
    frames: int = 16
    size: int = 64
    fps: int = 8
    version: int = GENERATOR_VERSION

    def __post_init__(self):
        def check_int(name, option, value, minimum, allow_none=False):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} ({option}) must be an integer, got {value!r}.")
            if value < minimum:
                raise ValueError(f"{name} ({option}) must be >= {minimum}, got {value}.")

        check_int("num_videos", "--num-videos", self.num_videos, 1)
        check_int("seed", "--seed", self.seed, 0)
        check_int("num_val", "--num-val", self.num_val, 0, allow_none=True)
        check_int("num_test", "--num-test", self.num_test, 0, allow_none=True)
        check_int("frames", "--frames", self.frames, 2)
        check_int("size", "--size", self.size, 16)
        check_int("fps", "--fps", self.fps, 1)
        if self.size % 2:
            raise ValueError(f"size (--size) must be even (H.264 yuv420p), got {self.size}.")
        # Resolve the split defaults so that equal content means equal settings.
        if self.num_val is None:
            object.__setattr__(self, "num_val", self.num_videos // 8)
        if self.num_test is None:
            object.__setattr__(self, "num_test", self.num_videos // 4)
        for name in ("num_videos", "seed", "num_val", "num_test", "frames", "size", "fps"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.num_videos, "val": self.num_val, "test": self.num_test}

    def command(self, out_dir: str) -> str:
        return (
            f"python -m processing.synthetic.benchmark --out {out_dir} --num-videos {self.num_videos} "
            f"--seed {self.seed} --num-val {self.num_val} --num-test {self.num_test} --frames {self.frames} "
            f"--size {self.size} --fps {self.fps}"
        )


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise TypeError(f"workers (--workers) must be an integer, got {workers!r}.")
    if workers < 1:
        raise ValueError(f"workers (--workers) must be >= 1, got {workers}.")
    return int(workers)


def plan_split(settings: BenchmarkSettings, split: str) -> list[dict]:
    """
    The videos of one split, in order: family by family (base first), each with its scene, captions and paragraph.
    Pure and cheap (no rendering); the same settings always give the same plan. Each caption also lists the
    videos of the split it is true of (`matches`): its own video alone for full captions.
    """
    count = settings.split_sizes()[split]
    code = _SPLIT_CODE[split]
    scene_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, code, _SCENES]))
    descriptions = DescriptionIndex()
    videos = []
    family_index = 0
    while len(videos) < count:
        family_id = f"{split}-f{family_index:05d}"
        family = sample_family(scene_rng, max_size=count - len(videos), num_frames=settings.frames, index=descriptions)
        base_id = None
        for member in family:
            index = len(videos)
            video_id = f"{split}_{index:05d}"
            base_id = base_id or video_id
            caption_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, code, _CAPTIONS, index]))
            description = describe(member["scene"], caption_rng)
            videos.append(
                {
                    "video_id": video_id,
                    "video": f"videos/{split}/{video_id}.mp4",
                    "split": split,
                    "family": family_id,
                    "role": "base" if member["factor"] is None else "variant",
                    "base": base_id,
                    "factor": member["factor"],
                    "factor_detail": member["detail"],
                    "canonical": description["canonical"],
                    "captions": description["captions"],
                    "partial_captions": [i for i, c in enumerate(description["captions"]) if c["partial"]],
                    "paragraph": description["paragraph"],
                    "scene": member["scene"],
                    "entropy": [settings.seed, code, _PIXELS, index],
                }
            )
        family_index += 1
    # Which videos of the split each caption is true of: only its own for full captions, possibly family members
    # and others for partial ones (multi-positive ground truth for evaluations that want it).
    for video in videos:
        for caption in video["captions"]:
            matches = descriptions.videos_with(event_claims(video["scene"], caption["events"]))
            caption["matches"] = [videos[i]["video_id"] for i in sorted(matches)]
    return videos


def annotation_captions(video: dict) -> list[str]:
    """The captions written to a split's annotation file.

    Training keeps every caption. Val and test keep only captions true of their own video alone (every full
    caption, and the partial ones no other video of the split also fits), so single-ground-truth R@K stays right;
    the ambiguous partial captions remain listed, with all their matches, in metadata.json.
    """
    if video["split"] == "train":
        return [caption["text"] for caption in video["captions"]]
    return [caption["text"] for caption in video["captions"] if caption["matches"] == [video["video_id"]]]


def benchmark_paths(out_dir: str | os.PathLike) -> dict:
    """Where each output of a benchmark in `out_dir` lives (whether or not it exists yet)."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    annotations = os.path.join(out_dir, "annotations")
    return {
        "out_dir": out_dir,
        "video_root": out_dir,  # annotation "video" paths are relative to this folder
        "annotations": {split: os.path.join(annotations, f"{split}.json") for split in SPLITS},
        "paragraph_annotations": {split: os.path.join(annotations, f"{split}_paragraph.json") for split in SPLITS},
        "metadata": os.path.join(out_dir, "metadata.json"),
        "readme": os.path.join(out_dir, "README.md"),
        "manifest": os.path.join(out_dir, MANIFEST),
    }


def _write_json(path: str, payload) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)


def _render_all(tasks: list[dict], workers: int, progress: bool) -> None:
    bar = tqdm(total=len(tasks), desc="Rendering synthetic videos", unit="video", disable=not progress)
    with bar:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                render_video(task)
                bar.update()
            return
        # spawn: a clean worker that never inherits the parent's threads or locks (e.g. torch's).
        context = multiprocessing.get_context("spawn")
        chunksize = max(1, min(16, len(tasks) // (4 * workers)))
        with context.Pool(min(workers, len(tasks))) as pool:
            for _ in pool.imap_unordered(render_video, tasks, chunksize=chunksize):
                bar.update()


def _readme(settings: BenchmarkSettings, out_dir: str, plans: dict) -> str:
    lines = [
        "# t2v2t synthetic text-video retrieval benchmark",
        "",
        "Procedurally rendered videos of simple shapes with captions in the VindLU/Singularity JSON format, made by",
        f"`processing.synthetic.benchmark` (generator version {settings.version}). Load a split with",
        "`processing.builders.vindlu.build_vindlu_json('annotations/test.json', video_root=<this folder>,",
        "split='test')` (and `paragraph=True` for `annotations/test_paragraph.json`).",
        "",
        "Made with:",
        "",
        f"    {settings.command(out_dir)}",
        "",
        f"{settings.frames} frames of {settings.size}x{settings.size} at {settings.fps} fps, H.264 yuv420p.",
        "",
        "| split | videos | families | captions | partial captions | factors (variants) |",
        "|---|---|---|---|---|---|",
    ]
    for split in SPLITS:
        videos = plans[split]
        factors = Counter(video["factor"] for video in videos if video["factor"])
        captions = sum(len(video["captions"]) for video in videos)
        partial = sum(len(video["partial_captions"]) for video in videos)
        families = len({video["family"] for video in videos})
        factor_text = ", ".join(f"{name} {factors[name]}" for name in sorted(factors)) or "-"
        lines.append(f"| {split} | {len(videos)} | {families} | {captions} | {partial} | {factor_text} |")
    lines += [
        "",
        "What makes it hard:",
        "",
        "- several paraphrased captions per video (templates and synonyms);",
        "- families: a base video and variants that each differ in exactly one described factor (one object's",
        "  colour, shape or size, one motion, or the order of two events); a family never spans two splits;",
        "- two-event videos also have partial captions (one event only, some with a temporal cue);",
        "- `*_paragraph.json`: one sentence per event, to be joined into one paragraph caption;",
        "- nuisances no caption mentions: textured and sometimes panning backgrounds, a distractor object in a",
        "  colour no described object of its family has, positional jitter, brightness flicker, pixel noise.",
        "",
        "A full caption is true of its own video only, within its split (no other video there has all the facts it",
        "states); a partial caption may also be true of other videos. `metadata.json` lists, per video: the family,",
        "its base, the distinguishing factor and its detail, the scene, a canonical description, and per caption",
        "whether it is partial, the events it describes and the videos of the split it is true of (`matches`).",
        "`train.json` holds every caption; `val.json` and `test.json` hold only the captions true of their own",
        "video alone (all full captions and the partial ones that fit no other video of the split), so each",
        "evaluation query has exactly one correct video.",
        "",
    ]
    return "\n".join(lines)


def render_benchmark(
    out_dir: str | os.PathLike,
    num_videos: int = DEFAULT_NUM_VIDEOS,
    seed: int = 0,
    num_val: int | None = None,
    num_test: int | None = None,
    frames: int = 16,
    size: int = 64,
    fps: int = 8,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """
    Renders the benchmark into `out_dir` (always; see `ensure_benchmark` to reuse an existing one).

    Args:
        out_dir: output folder (created; files of an earlier benchmark there are replaced).
        num_videos: number of train videos. num_val / num_test default to num_videos // 8 and // 4.
        seed: the benchmark is a pure function of the seed and the other settings.
        frames, size, fps: clip length, frame side in pixels (even), frame rate.
        workers: processes that render videos in parallel (each encodes with one thread).
        progress: show a tqdm progress bar.

    Returns:
        `benchmark_paths(out_dir)` plus `counts` ({split: number of videos}), `settings` and `rendered=True`.
    """
    settings = BenchmarkSettings(num_videos, seed, num_val, num_test, frames, size, fps)
    workers = _check_workers(workers)
    paths = benchmark_paths(out_dir)
    out_dir = paths["out_dir"]
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(paths["manifest"])  # from here until the manifest is rewritten, the folder is incomplete

    plans = {split: plan_split(settings, split) for split in SPLITS}
    tasks = []
    for split in SPLITS:
        os.makedirs(os.path.join(out_dir, "videos", split), exist_ok=True)
        for video in plans[split]:
            tasks.append(
                {
                    "scene": video["scene"],
                    "path": os.path.join(out_dir, video["video"]),
                    "num_frames": settings.frames,
                    "size": settings.size,
                    "fps": settings.fps,
                    "entropy": video["entropy"],
                }
            )
    logger.info("Rendering %d synthetic videos into %s with %d workers.", len(tasks), out_dir, workers)
    _render_all(tasks, workers, progress)
    _remove_stale_videos(out_dir, {video["video"] for videos in plans.values() for video in videos})

    for split in SPLITS:
        _write_json(
            paths["annotations"][split],
            [{"video": video["video"], "caption": annotation_captions(video)} for video in plans[split]],
        )
        _write_json(
            paths["paragraph_annotations"][split],
            [{"video": video["video"], "caption": video["paragraph"]} for video in plans[split]],
        )
    metadata = {
        "version": settings.version,
        "settings": asdict(settings),
        "videos": [{k: v for k, v in video.items() if k != "entropy"} for split in SPLITS for video in plans[split]],
    }
    _write_json(paths["metadata"], metadata)
    with open(paths["readme"], "w", encoding="utf-8") as handle:
        handle.write(_readme(settings, os.fspath(out_dir), plans))
    counts = {split: len(plans[split]) for split in SPLITS}
    _write_json(
        paths["manifest"],
        {
            "settings": asdict(settings),
            "counts": counts,
            "videos": [video["video"] for split in SPLITS for video in plans[split]],
        },
    )
    logger.info("Synthetic benchmark ready in %s: %s videos.", out_dir, counts)
    return {**paths, "counts": counts, "settings": asdict(settings), "rendered": True}


def _remove_stale_videos(out_dir: str, keep: set[str]) -> None:
    """Removes videos of an earlier, larger render (only files named like ours, in our split folders)."""
    for split in SPLITS:
        folder = os.path.join(out_dir, "videos", split)
        for name in os.listdir(folder):
            relative = f"videos/{split}/{name}"
            if _VIDEO_NAME.match(name) and relative not in keep:
                os.remove(os.path.join(folder, name))


def is_complete(out_dir: str | os.PathLike, settings: BenchmarkSettings) -> bool:
    """Whether `out_dir` holds a finished benchmark made with exactly `settings` (every listed file present)."""
    paths = benchmark_paths(out_dir)
    try:
        with open(paths["manifest"], encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if manifest.get("settings") != asdict(settings):
        return False
    files = [paths["metadata"], *paths["annotations"].values(), *paths["paragraph_annotations"].values()]
    files += [os.path.join(paths["out_dir"], video) for video in manifest.get("videos", [])]
    return all(os.path.isfile(path) and os.path.getsize(path) > 0 for path in files)


@contextlib.contextmanager
def _lock(out_dir: str):
    """An exclusive lock on `out_dir` so that concurrent callers (e.g. test workers) do not render over each other."""
    os.makedirs(out_dir, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(os.path.join(out_dir, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_benchmark_dir(num_videos: int = DEFAULT_NUM_VIDEOS, seed: int = 0, num_val: int | None = None,
                          num_test: int | None = None, frames: int = 16, size: int = 64, fps: int = 8) -> str:
    """
    The cache folder of one benchmark (`$T2V2T_SYNTHETIC_DIR`, else under `$XDG_CACHE_HOME` or `~/.cache`): named by
    every setting that changes the content, so benchmarks that differ only in, say, `num_test` never share (and
    re-render over each other in) one folder. Default settings keep the plain name `v2_n{num_videos}_seed{seed}`;
    each other setting adds a suffix (`_test1000`, `_f32`, ...).
    """
    settings = BenchmarkSettings(num_videos, seed, num_val, num_test, frames, size, fps)
    defaults = BenchmarkSettings(num_videos, seed)
    suffix = "".join(f"_{tag}{getattr(settings, name)}" for name, tag in (
        ("num_val", "val"), ("num_test", "test"), ("frames", "f"), ("size", "s"), ("fps", "fps"))
        if getattr(settings, name) != getattr(defaults, name))
    root = os.environ.get("T2V2T_SYNTHETIC_DIR")
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        root = os.path.join(cache, "t2v2t", "synthetic")
    return os.path.join(root, f"v{GENERATOR_VERSION}_n{settings.num_videos}_seed{settings.seed}{suffix}")


def ensure_benchmark(
    out_dir: str | os.PathLike | None = None,
    num_videos: int = DEFAULT_NUM_VIDEOS,
    seed: int = 0,
    num_val: int | None = None,
    num_test: int | None = None,
    frames: int = 16,
    size: int = 64,
    fps: int = 8,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """
    The benchmark in `out_dir`, rendered only if the folder does not already hold a complete one made with the same
    settings (same arguments as `render_benchmark`; `workers`/`progress` do not change the content). With
    `out_dir=None`, a per-settings cache folder (`default_benchmark_dir`). Returns what `render_benchmark` returns,
    with `rendered` False when the existing files were reused.
    """
    settings = BenchmarkSettings(num_videos, seed, num_val, num_test, frames, size, fps)
    _check_workers(workers)
    if out_dir is None:
        out_dir = default_benchmark_dir(settings.num_videos, settings.seed, settings.num_val, settings.num_test,
                                        settings.frames, settings.size, settings.fps)
    paths = benchmark_paths(out_dir)
    with _lock(paths["out_dir"]):
        if is_complete(paths["out_dir"], settings):
            logger.info("Reusing the synthetic benchmark in %s.", paths["out_dir"])
            counts = settings.split_sizes()
            return {**paths, "counts": counts, "settings": asdict(settings), "rendered": False}
        return render_benchmark(
            paths["out_dir"], settings.num_videos, settings.seed, settings.num_val, settings.num_test,
            settings.frames, settings.size, settings.fps, workers=workers, progress=progress,
        )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m processing.synthetic.benchmark",
        description="Render the built-in synthetic text-video retrieval benchmark (mp4 + VindLU JSON annotations).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-videos", type=int, default=DEFAULT_NUM_VIDEOS, help="number of train videos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-val", type=int, default=None, help="validation videos (default: num-videos // 8)")
    parser.add_argument("--num-test", type=int, default=None, help="test videos (default: num-videos // 4)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.parser = parser
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = render_benchmark(
            args.out, args.num_videos, args.seed, args.num_val, args.num_test, args.frames, args.size, args.fps,
            workers=args.workers, progress=not args.no_progress,
        )
    except (TypeError, ValueError) as error:
        args.parser.error(str(error))
    counts = ", ".join(f"{split} {count}" for split, count in result["counts"].items())
    print(f"Synthetic benchmark in {result['out_dir']}: {counts} videos.")
    for split in SPLITS:
        print(f"  {split}: {result['annotations'][split]}")
    return result


__all__ = [
    "BenchmarkSettings",
    "DEFAULT_NUM_VIDEOS",
    "GENERATOR_VERSION",
    "SPLITS",
    "benchmark_paths",
    "default_benchmark_dir",
    "ensure_benchmark",
    "is_complete",
    "plan_split",
    "render_benchmark",
]


if __name__ == "__main__":
    main(sys.argv[1:])
