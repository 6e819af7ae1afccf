"""Tests of the built-in synthetic benchmark: files, VindLU-format annotations, splits and families, determinism,
the hard negatives (one-factor variants, order swaps, partial captions), paragraphs, `ensure_benchmark` and errors."""

import importlib.util
import json
import os
import re

import av
import numpy as np
import pytest

from processing.synthetic import benchmark as bench
from processing.synthetic.captions import ACTION_PHRASES, COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
from processing.synthetic.render import render_frames
from processing.synthetic.scenes import COLOURS, SIZE_RADIUS, object_states
from synthetic_helpers import mentioned_events, read_mp4

NUM_TRAIN = 16  # val 2, test 4 by default
ANNOTATION_FILES = [f"annotations/{split}{suffix}.json" for split in bench.SPLITS for suffix in ("", "_paragraph")]


def render(out_dir, seed=0, workers=1, **kwargs):
    return bench.render_benchmark(out_dir, num_videos=NUM_TRAIN, seed=seed, workers=workers, progress=False, **kwargs)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return render(out)


@pytest.fixture(scope="module")
def metadata(rendered):
    with open(rendered["metadata"], encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def plan():
    """A larger plan (no rendering) for the structural checks: enough families of every kind and factor."""
    return bench.plan_split(bench.BenchmarkSettings(num_videos=300), "train")


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def has_word(text, words):
    return any(re.search(rf"\b{re.escape(word)}\b", text.lower()) for word in words)


def test_layout_counts_and_videos_decode(rendered):
    assert rendered["counts"] == {"train": NUM_TRAIN, "val": NUM_TRAIN // 8, "test": NUM_TRAIN // 4}
    for name in ANNOTATION_FILES + ["metadata.json", "README.md", "manifest.json"]:
        assert os.path.isfile(os.path.join(rendered["out_dir"], name)), name
    readme = open(rendered["readme"], encoding="utf-8").read()
    assert f"--num-videos {NUM_TRAIN} --seed 0" in readme
    for split in bench.SPLITS:
        entries = load(rendered["annotations"][split])
        assert len(entries) == rendered["counts"][split]
        assert sorted(os.listdir(os.path.join(rendered["out_dir"], "videos", split))) == sorted(
            os.path.basename(entry["video"]) for entry in entries
        )
        for entry in entries:
            path = os.path.join(rendered["video_root"], entry["video"])
            with av.open(path) as container:
                stream = container.streams.video[0]
                assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            assert len(frames) == 16 and frames[0].shape == (64, 64, 3)


def test_annotations_are_vindlu_json(rendered):
    for split in bench.SPLITS:
        for entry in load(rendered["annotations"][split]):
            assert set(entry) == {"video", "caption"}
            assert re.fullmatch(rf"videos/{split}/{split}_\d{{5}}\.mp4", entry["video"])
            captions = entry["caption"]
            assert isinstance(captions, list) and len(captions) >= 3
            assert all(isinstance(c, str) and c.strip() for c in captions)
            assert len(set(captions)) == len(captions)  # paraphrases, not copies


def test_splits_disjoint_and_families_whole(metadata):
    videos = metadata["videos"]
    assert len({v["video_id"] for v in videos}) == len(videos)
    split_of_family = {}
    for video in videos:
        assert split_of_family.setdefault(video["family"], video["split"]) == video["split"]
    by_id = {v["video_id"]: v for v in videos}
    for video in videos:  # a variant's base is in its family, hence in its split
        base = by_id[video["base"]]
        assert base["family"] == video["family"] and base["role"] == "base"
    assert {v["split"] for v in videos} == set(bench.SPLITS)


def test_deterministic_and_seed_dependent(rendered, tmp_path):
    again = render(tmp_path / "again", workers=2)  # other worker count: the output must not depend on scheduling
    other = render(tmp_path / "other", seed=1)
    for name in ANNOTATION_FILES + ["metadata.json"]:
        first = open(os.path.join(rendered["out_dir"], name), "rb").read()
        assert open(os.path.join(again["out_dir"], name), "rb").read() == first, name
    assert open(other["annotations"]["train"], "rb").read() != open(rendered["annotations"]["train"], "rb").read()
    differs = 0
    for entry in load(rendered["annotations"]["train"]) + load(rendered["annotations"]["test"]):
        path, path_again = (os.path.join(root, entry["video"]) for root in (rendered["out_dir"], again["out_dir"]))
        assert open(path, "rb").read() == open(path_again, "rb").read()  # byte-identical mp4
        frames = read_mp4(path)
        np.testing.assert_array_equal(frames, read_mp4(path_again))
        differs += not np.array_equal(frames, read_mp4(os.path.join(other["out_dir"], entry["video"])))
    assert differs == NUM_TRAIN + NUM_TRAIN // 4


def described(scene):
    """Everything a caption can talk about: the objects' attributes and the events, in order."""
    objects = [(o["shape"], o["colour"], o["size"]) for o in scene["objects"]]
    return objects, [(e["object"], e["action"]) for e in scene["events"]]


def test_variants_differ_from_base_in_exactly_one_factor(plan):
    by_id = {v["video_id"]: v for v in plan}
    factors = set()
    for video in plan:
        if video["role"] == "base":
            continue
        base = by_id[video["base"]]
        factor, detail = video["factor"], video["factor_detail"]
        factors.add(factor)
        (objects, events), (base_objects, base_events) = described(video["scene"]), described(base["scene"])
        # Nuisances are shared by the family, so the factor is the only difference.
        assert video["scene"]["background"] == base["scene"]["background"]
        assert video["scene"]["distractor"] == base["scene"]["distractor"]
        assert [o["position"] for o in video["scene"]["objects"]] == [o["position"] for o in base["scene"]["objects"]]
        full = [c["text"] for c in video["captions"] if not c["partial"]]
        if factor in ("colour", "shape", "size"):
            assert events == base_events
            changed = [i for i, (a, b) in enumerate(zip(objects, base_objects)) if a != b]
            assert changed == [detail["object"]]
            attribute = ("shape", "colour", "size").index(factor)
            assert [k for k in range(3) if objects[changed[0]][k] != base_objects[changed[0]][k]] == [attribute]
            words = {"colour": COLOUR_WORDS, "shape": SHAPE_WORDS, "size": SIZE_WORDS}[factor][detail["to"]]
            assert all(has_word(text, words) for text in full)
        elif factor == "motion":
            assert objects == base_objects
            changed = [i for i, (a, b) in enumerate(zip(events, base_events)) if a != b]
            assert changed == [detail["event"]] and events[changed[0]][0] == base_events[changed[0]][0]
            assert all(has_word(text, ACTION_PHRASES[detail["to"]]) for text in full)
        else:
            assert factor == "order" and objects == base_objects and events == base_events[::-1] != base_events
        assert video["canonical"] != base["canonical"]
    assert factors == {"colour", "shape", "size", "motion", "order"}


def test_variant_pixels_differ_from_base(rendered, metadata):
    videos = {v["video_id"]: v for v in metadata["videos"]}
    variants = [v for v in videos.values() if v["role"] == "variant"]
    assert variants
    for video in variants:
        frames = read_mp4(os.path.join(rendered["out_dir"], video["video"])).astype(int)
        base = read_mp4(os.path.join(rendered["out_dir"], videos[video["base"]]["video"])).astype(int)
        assert np.abs(frames - base).max() > 100  # the factor is visible, not lost in the noise


def test_full_captions_identify_their_video_partial_captions_one_event(plan):
    kinds = set()
    for video in plan:
        scene, captions = video["scene"], video["captions"]
        kinds.add(scene["kind"])
        full = [c for c in captions if not c["partial"]]
        partial = [c for c in captions if c["partial"]]
        assert len(captions) >= 3 and len(full) >= 3
        for caption in full:
            assert caption["matches"] == [video["video_id"]]
            assert mentioned_events(caption["text"], scene) == list(range(len(scene["events"])))
        if len(scene["events"]) == 1:
            assert not partial
            continue
        assert [c["events"] for c in partial] == [[0], [1]]
        assert video["partial_captions"] == [i for i, c in enumerate(captions) if c["partial"]]
        for caption in partial:
            assert mentioned_events(caption["text"], scene) == caption["events"]
            assert video["video_id"] in caption["matches"]
    assert kinds == {"single", "companion", "sequence", "pair"}


def test_order_swap_swaps_the_event_order_of_captions_and_paragraphs(plan):
    by_id = {v["video_id"]: v for v in plan}
    swapped = [v for v in plan if v["factor"] == "order"]
    assert swapped
    for video in swapped:
        base = by_id[video["base"]]
        # Sentence k of the variant's paragraph is about event k of the variant = event 1 - k of the base.
        assert [mentioned_events(s, base["scene"]) for s in video["paragraph"]] == [[1], [0]]
        assert [mentioned_events(s, base["scene"]) for s in base["paragraph"]] == [[0], [1]]
        first, second = base["canonical"].split(", then ")
        if second.startswith("it "):  # one object: "a small red circle moves left, then it grows"
            verbs = [ACTION_PHRASES[event["action"]][0] for event in base["scene"]["events"]]
            swap = {verbs[0]: verbs[1], verbs[1]: verbs[0]}
            expected = re.sub(rf"\b({verbs[0]}|{verbs[1]})\b", lambda m: swap[m.group(1)], base["canonical"])
        else:  # two objects: "a small red circle moves left, then a large blue square grows"
            expected = f"{second}, then {first}"
        assert video["canonical"] == expected


def test_paragraph_files_have_one_sentence_per_event(rendered, metadata):
    videos = {v["video"]: v for v in metadata["videos"]}
    for split in bench.SPLITS:
        for entry in load(rendered["paragraph_annotations"][split]):
            scene = videos[entry["video"]]["scene"]
            assert len(entry["caption"]) == len(scene["events"])
            for k, sentence in enumerate(entry["caption"]):
                assert mentioned_events(sentence, scene) == [k]


def test_described_colours_are_visible(rendered, metadata):
    for video in metadata["videos"]:
        frame = read_mp4(os.path.join(rendered["out_dir"], video["video"]))[0].astype(float)
        states = object_states(video["scene"], np.array([0.0]))
        for obj, state in zip(video["scene"]["objects"], states):
            if state["alpha"][0] < 1:  # not there yet: it appears later
                continue
            close = np.linalg.norm(frame - np.asarray(COLOURS[obj["colour"]]), axis=-1) < 70
            area = np.pi * (SIZE_RADIUS[obj["size"]] * 64) ** 2
            assert close.sum() > 0.3 * area, (video["video_id"], obj)


def test_render_frames_deterministic_given_rng(plan):
    scene = plan[0]["scene"]
    first = render_frames(scene, 8, 32, np.random.default_rng(3))
    assert first.shape == (8, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_frames(scene, 8, 32, np.random.default_rng(3)))
    assert not np.array_equal(first, render_frames(scene, 8, 32, np.random.default_rng(4)))


def test_ensure_benchmark_reuses_and_rerenders(tmp_path):
    out = tmp_path / "ensure"
    settings = dict(num_videos=4, seed=0, frames=4, size=32, workers=1, progress=False)
    first = bench.ensure_benchmark(out, **settings)
    assert first["rendered"] and first["counts"] == {"train": 4, "val": 0, "test": 1}
    video = os.path.join(out, "videos", "train", "train_00000.mp4")
    stamp = os.stat(video).st_mtime_ns, os.stat(first["manifest"]).st_mtime_ns
    second = bench.ensure_benchmark(out, **settings)
    assert not second["rendered"]
    assert (os.stat(video).st_mtime_ns, os.stat(first["manifest"]).st_mtime_ns) == stamp
    assert second["annotations"] == first["annotations"]
    changed = bench.ensure_benchmark(out, **{**settings, "frames": 6})
    assert changed["rendered"] and len(read_mp4(video)) == 6
    smaller = bench.ensure_benchmark(out, **{**settings, "frames": 6, "num_videos": 2})
    assert smaller["rendered"] and sorted(os.listdir(os.path.join(out, "videos", "train"))) == [
        "train_00000.mp4", "train_00001.mp4"
    ]  # videos of the earlier, larger render are gone
    os.remove(video)  # an incomplete folder is rendered again
    assert bench.ensure_benchmark(out, **{**settings, "frames": 6, "num_videos": 2})["rendered"]
    assert os.path.isfile(video)


def test_cache_folders_differ_whenever_the_content_does(tmp_path, monkeypatch):
    monkeypatch.setenv("T2V2T_SYNTHETIC_DIR", str(tmp_path))
    # Default settings keep the plain name (existing caches stay valid), also when the defaults are spelled out.
    assert bench.default_benchmark_dir(1000, 0) == str(tmp_path / "v2_n1000_seed0")
    assert bench.default_benchmark_dir(1000, 0, num_val=125, num_test=250) == str(tmp_path / "v2_n1000_seed0")
    assert bench.default_benchmark_dir(1000, 0, num_test=1000) == str(tmp_path / "v2_n1000_seed0_test1000")
    assert bench.default_benchmark_dir(8, 1, num_val=2, frames=4, size=32, fps=4) == str(
        tmp_path / "v2_n8_seed1_val2_f4_s32_fps4")
    # Two benchmarks that differ only in their test split live side by side: neither re-renders the other.
    small = bench.ensure_benchmark(num_videos=4, frames=4, size=32, num_test=1, workers=1, progress=False)
    large = bench.ensure_benchmark(num_videos=4, frames=4, size=32, num_test=2, workers=1, progress=False)
    assert small["out_dir"] != large["out_dir"] and large["rendered"]
    assert not bench.ensure_benchmark(num_videos=4, frames=4, size=32, num_test=1, workers=1,
                                      progress=False)["rendered"]


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"num_videos": 0}, "--num-videos"),
        ({"num_videos": 2.5}, "--num-videos"),
        ({"seed": -1}, "--seed"),
        ({"num_val": -1}, "--num-val"),
        ({"num_test": -2}, "--num-test"),
        ({"frames": 1}, "--frames"),
        ({"size": 8}, "--size"),
        ({"size": 33}, "--size"),
        ({"fps": 0}, "--fps"),
        ({"workers": 0}, "--workers"),
    ],
)
def test_bad_arguments_name_the_option(tmp_path, kwargs, option):
    arguments = {"num_videos": 4, **kwargs}
    for function in (bench.render_benchmark, bench.ensure_benchmark):
        with pytest.raises((ValueError, TypeError), match=option):
            function(tmp_path / "bad", progress=False, **arguments)
    assert not os.path.exists(tmp_path / "bad" / "videos")


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    bench.main(["--out", str(out), "--num-videos", "2", "--seed", "3", "--num-test", "1", "--frames", "3",
                "--size", "18", "--workers", "1", "--no-progress"])
    assert "train 2, val 0, test 1 videos" in capsys.readouterr().out
    assert len(read_mp4(os.path.join(out, "videos", "test", "test_00000.mp4"))) == 3
    with pytest.raises(SystemExit):
        bench.main(["--out", str(out), "--num-videos", "0"])
    assert "--num-videos" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("processing.builders.vindlu") is None, reason="no VindLU builder yet")
def test_vindlu_builder_loads_the_benchmark(rendered):
    from processing.builders.vindlu import build_vindlu_json

    entries = load(rendered["annotations"]["test"])
    dataset, skipped = build_vindlu_json(rendered["annotations"]["test"], rendered["video_root"], split="test")
    assert len(skipped) == 0 and len(dataset) == len(entries)
    rows = {row["video_id"]: row for row in dataset}
    for entry in entries:
        row = rows[entry["video"]]
        assert row["captions"] == entry["caption"] and os.path.isfile(row["video"]) and row["split"] == "test"
    paragraphs = load(rendered["paragraph_annotations"]["test"])
    dataset, _ = build_vindlu_json(
        rendered["paragraph_annotations"]["test"], rendered["video_root"], split="test", paragraph=True
    )
    rows = {row["video_id"]: row for row in dataset}
    for entry in paragraphs:
        (paragraph,) = rows[entry["video"]]["captions"]
        assert all(sentence in paragraph for sentence in entry["caption"])


def test_evaluation_files_hold_only_unambiguous_captions():
    settings = bench.BenchmarkSettings(num_videos=300)
    test_videos = bench.plan_split(settings, "test")
    kept = dropped = 0
    for video in test_videos:
        captions = bench.annotation_captions(video)
        assert len(captions) >= 3
        for caption in video["captions"]:
            unique = caption["matches"] == [video["video_id"]]
            assert (caption["text"] in captions) == unique  # one correct video per evaluation query
            kept += unique and caption["partial"]
            dropped += not unique
    assert kept > 0 and dropped > 0  # some partial captions are unambiguous and stay; ambiguous ones go
    train_video = next(v for v in bench.plan_split(settings, "train") if v["partial_captions"])
    assert bench.annotation_captions(train_video) == [c["text"] for c in train_video["captions"]]
