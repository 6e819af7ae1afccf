"""Dataset builders on small annotation files written in each corpus's real format (tests/fixtures/annotations/).

Media files are created in tmp_path: empty placeholders for videos (builders only check that they exist), tiny
real images for image corpora.
"""

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from processing.builders import (
    BUILDERS,
    build,
    build_activitynet,
    build_cc3m,
    build_didemo,
    build_msrvtt,
    build_vindlu_json,
    build_webvid,
)
from processing.schema import FEATURES, AnnotationError, EmptySplitError

FIXTURES = Path(__file__).parent / "fixtures" / "annotations"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def make_media(paths) -> None:
    for path in map(Path, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            Image.new("RGB", (4, 4), (200, 30, 30)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
        else:
            path.touch()


def with_media(builder: Callable, *args, **kwargs):
    """Builds once without file checks to learn the expected paths, creates them, builds again with checks."""
    dataset, _ = builder(*args, check_files=False, **kwargs)
    make_media(dataset["video"])
    return builder(*args, **kwargs)


def check_schema(dataset, split: str, media_type: str = "video") -> None:
    assert dataset.features == FEATURES
    assert set(dataset["split"]) == {split}
    assert set(dataset["media_type"]) == {media_type}
    assert all(Path(path).is_absolute() and Path(path).is_file() for path in dataset["video"])
    assert len(set(dataset["video_id"])) == len(dataset)


# ---------------------------------------------------------------- VindLU / Singularity JSON


def test_vindlu_groups_the_captions_of_repeated_videos(tmp_path):
    dataset, report = with_media(build_vindlu_json, FIXTURES / "vindlu/msrvtt_ret_train9k.json", tmp_path)
    check_schema(dataset, "train")
    assert len(report) == 0
    assert dataset["video_id"] == ["video0.mp4", "video1.mp4", "video2.mp4"]
    assert dataset[0]["captions"] == [
        "a car is driving down a winding mountain road",
        "a red sports car speeds along a highway",
        "someone films a car from a helicopter",
    ]
    assert [len(c) for c in dataset["captions"]] == [3, 2, 1]
    assert dataset[0]["video"] == str(tmp_path / "video0.mp4")
    assert dataset[0]["timestamps"] == []


def test_vindlu_paragraph_joins_sentences(tmp_path):
    annotation = FIXTURES / "vindlu/anet_ret_val_1.json"
    paragraphs, _ = with_media(build_vindlu_json, annotation, tmp_path, split="test", paragraph=True)
    check_schema(paragraphs, "test")
    assert paragraphs[1]["captions"] == [
        "Three men are standing on a mat. The man in front begins to do karate on the mat. "
        "He gets down on the ground and flips around."
    ]
    sentences, _ = build_vindlu_json(annotation, tmp_path, split="test")
    assert [len(c) for c in sentences["captions"]] == [2, 3]


def test_vindlu_image_entries(tmp_path):
    dataset, _ = with_media(build_vindlu_json, FIXTURES / "vindlu/coco_test.json", tmp_path, media_type="image")
    check_schema(dataset, "train", media_type="image")
    assert dataset["video_id"] == ["val2014/COCO_val2014_000000391895.jpg", "val2014/COCO_val2014_000000522418.jpg"]
    assert len(dataset[0]["captions"]) == 2
    with pytest.raises(ValueError, match="media_type"):
        build_vindlu_json(FIXTURES / "vindlu/coco_test.json", tmp_path, media_type="audio")


def test_vindlu_reads_the_synthetic_benchmark_layout(tmp_path):
    """annotations/<split>.json and <split>_paragraph.json with paths relative to the benchmark root."""
    root = tmp_path / "bench"
    shutil.copytree(FIXTURES / "synthetic", root / "annotations")
    captions, _ = with_media(build_vindlu_json, root / "annotations/test.json", root, split="test")
    check_schema(captions, "test")
    assert captions[0]["video"] == str(root / "videos/test/red_circle_moves_left.mp4")
    assert captions[0]["captions"] == ["a red circle moves to the left", "a small red disc slides leftwards"]
    paragraphs, _ = build_vindlu_json(root / "annotations/test_paragraph.json", root, split="test", paragraph=True)
    assert paragraphs["video_id"] == captions["video_id"]
    assert paragraphs[0]["captions"] == ["A red circle appears. It moves to the left. Then it stops."]


# ---------------------------------------------------------------- MSR-VTT


@pytest.mark.parametrize(
    "split, video_ids, captions_per_video",
    [
        ("train_9k", ["video0", "video1", "video2", "video6513", "video7021"], [3, 2, 2, 2, 2]),
        ("train_7k", ["video0", "video1", "video2", "video6513"], [3, 2, 2, 2]),
        ("test_1k_a", ["video9770", "video9771", "video7020"], [1, 1, 1]),
        ("train", ["video0", "video1", "video2"], [3, 2, 2]),
        ("validate", ["video6513"], [2]),
        ("test", ["video7020", "video7021", "video9770", "video9771"], [2, 2, 2, 2]),
    ],
)
def test_msrvtt_split_selection(tmp_path, split, video_ids, captions_per_video):
    dataset, report = with_media(build_msrvtt, tmp_path, split, annotation_dir=FIXTURES / "msrvtt")
    check_schema(dataset, split)
    assert len(report) == 0
    assert dataset["video_id"] == video_ids
    assert [len(c) for c in dataset["captions"]] == captions_per_video
    assert dataset[0]["video"] == str(tmp_path / f"{video_ids[0]}.mp4")


def test_msrvtt_explicit_files_and_caption_order(tmp_path):
    folder = FIXTURES / "msrvtt"
    dataset, _ = with_media(
        build_msrvtt,
        tmp_path,
        "train_7k",
        data_json=folder / "MSRVTT_data.json",
        train_csv=folder / "MSRVTT_train.7k.csv",
    )
    # All sentences of video0, in the order of the json (they are interleaved with other videos' there).
    assert dataset[0]["captions"] == [
        "a car is shown driving on a road",
        "a red car drives through the countryside",
        "a vehicle moves along a street",
    ]
    test, _ = with_media(build_msrvtt, tmp_path, "test_1k_a", test_csv=folder / "MSRVTT_JSFUSION_test.csv")
    assert test[0]["captions"] == ["a person is connecting something to system"]


def test_msrvtt_arguments(tmp_path):
    with pytest.raises(ValueError, match="train_9k.*test_1k_a"):
        build_msrvtt(tmp_path, "1k-A", annotation_dir=FIXTURES / "msrvtt")
    with pytest.raises(ValueError, match="train_csv"):
        build_msrvtt(tmp_path, "train_9k", data_json=FIXTURES / "msrvtt/MSRVTT_data.json")


def test_msrvtt_falls_back_to_other_extensions(tmp_path):
    make_media([tmp_path / "video9770.webm", tmp_path / "video9771.mp4", tmp_path / "video7020.mp4"])
    dataset, _ = build_msrvtt(tmp_path, "test_1k_a", annotation_dir=FIXTURES / "msrvtt")
    assert dataset[0]["video"] == str(tmp_path / "video9770.webm")
    with pytest.raises(AnnotationError, match=r"video9770\.mp4"):
        build_msrvtt(tmp_path, "test_1k_a", annotation_dir=FIXTURES / "msrvtt", video_extension=".mp4")


def test_msrvtt_csv_video_without_sentences(tmp_path):
    csv_file = tmp_path / "MSRVTT_train.9k.csv"
    csv_file.write_text("video_id\nvideo0\nvideo8888\n")
    kwargs = dict(data_json=FIXTURES / "msrvtt/MSRVTT_data.json", train_csv=csv_file, check_files=False)
    with pytest.raises(AnnotationError, match=r"MSRVTT_train\.9k\.csv, line 3: video 'video8888' has no sentences"):
        build_msrvtt(tmp_path, "train_9k", **kwargs)
    dataset, report = build_msrvtt(tmp_path, "train_9k", skip_bad=True, **kwargs)
    assert dataset["video_id"] == ["video0"] and len(report) == 1


# ---------------------------------------------------------------- DiDeMo

DIDEMO_A = "26292851@N04_4253489686_265c3c8051.m4v"
DIDEMO_B = "65430553@N08_7599657594_57ef62657c.avi"
DIDEMO_C = "10052357@N03_7585070382_5762149bfc."


def test_didemo_paragraphs_and_moments(tmp_path):
    dataset, _ = with_media(build_didemo, FIXTURES / "didemo/test_data.json", tmp_path)
    check_schema(dataset, "test")  # split from the file name
    assert dataset["video_id"] == [DIDEMO_A, DIDEMO_B, DIDEMO_C]
    assert dataset[0]["captions"] == [
        "someone kicks the bug towards some rocks. a man in a red shirt stomps on a centipede. "
        "close up of a millipede on the rocks"
    ]
    # Chunk (s, e) -> [5s, 5(e+1)] seconds, the annotators' most frequent pair; a tie keeps the first seen.
    assert dataset[0]["timestamps"] == [[20.0, 25.0], [10.0, 20.0], [25.0, 30.0]]
    assert dataset[1]["timestamps"] == [[5.0, 10.0], [15.0, 25.0]]
    assert dataset[2]["timestamps"] == [[0.0, 5.0]]

    sentences, _ = build_didemo(FIXTURES / "didemo/test_data.json", tmp_path, split="val", paragraph=False)
    assert sentences[1]["captions"] == [
        "the object is travelling away, but then comes back",
        "a boat turns around in the water",
    ]
    assert len(sentences[1]["timestamps"]) == len(sentences[1]["captions"])
    assert set(sentences["split"]) == {"val"}


def test_didemo_finds_converted_videos(tmp_path):
    annotation = FIXTURES / "didemo/test_data.json"
    # As LocalizingMoments' AWS script saves them (<name>.mp4), and re-encoded (<stem>.mp4).
    make_media([tmp_path / f"{DIDEMO_A}.mp4", tmp_path / "65430553@N08_7599657594_57ef62657c.mp4"])
    with pytest.raises(AnnotationError) as error:
        build_didemo(annotation, tmp_path)
    message = str(error.value)
    assert "test_data.json, entry 3" in message and DIDEMO_C in message
    assert str(tmp_path / "10052357@N03_7585070382_5762149bfc.mp4") in message  # the paths tried

    make_media([tmp_path / "10052357@N03_7585070382_5762149bfc.mp4"])
    dataset, _ = build_didemo(annotation, tmp_path)
    assert dataset["video"] == [
        str(tmp_path / f"{DIDEMO_A}.mp4"),
        str(tmp_path / "65430553@N08_7599657594_57ef62657c.mp4"),
        str(tmp_path / "10052357@N03_7585070382_5762149bfc.mp4"),
    ]
    only_mp4, _ = build_didemo(annotation, tmp_path, video_extension=".mp4")
    assert only_mp4["video"] == dataset["video"]


# ---------------------------------------------------------------- ActivityNet Captions


def test_activitynet_paragraphs_and_timestamps(tmp_path):
    dataset, _ = with_media(build_activitynet, FIXTURES / "activitynet/val_1.json", tmp_path)
    check_schema(dataset, "val_1")
    assert dataset["video_id"] == ["v_QOlSCBRmfWY", "v_ehGHCYKzyZ8", "v_nwznKOuZM7w"]
    assert dataset[1]["captions"] == [
        "Two men are seen standing in a gym holding weights. One lifts the bar over his head and drops it back down."
    ]
    assert dataset[1]["timestamps"] == [[0.0, pytest.approx(16.05)], [pytest.approx(14.81), pytest.approx(61.72)]]
    assert dataset[0]["video"] == str(tmp_path / "v_QOlSCBRmfWY.mp4")

    sentences, _ = build_activitynet(FIXTURES / "activitynet/val_1.json", tmp_path, split="val", paragraph=False)
    assert sentences[0]["captions"][1] == "The girl dances around the room while the camera captures her movements."


def test_activitynet_videos_with_or_without_prefix(tmp_path):
    annotation = FIXTURES / "activitynet/val_1.json"
    make_media([tmp_path / "v_QOlSCBRmfWY.mp4", tmp_path / "ehGHCYKzyZ8.mkv"])
    with pytest.raises(AnnotationError) as error:
        build_activitynet(annotation, tmp_path)
    message = str(error.value)
    assert "val_1.json, entry 2 (video 'v_nwznKOuZM7w')" in message
    assert str(tmp_path / "v_nwznKOuZM7w.mp4") in message and str(tmp_path / "nwznKOuZM7w.mp4") in message

    dataset, report = build_activitynet(annotation, tmp_path, skip_bad=True)
    assert dataset["video"] == [str(tmp_path / "v_QOlSCBRmfWY.mp4"), str(tmp_path / "ehGHCYKzyZ8.mkv")]
    assert len(report) == 1 and "v_nwznKOuZM7w" in report.skipped[0][0]


# ---------------------------------------------------------------- WebVid and CC3M


def test_webvid_layouts(tmp_path):
    csv_file = FIXTURES / "webvid/results_2M_val.csv"
    make_media([tmp_path / "006001_006050/31353427.mp4", tmp_path / "14781349.mp4", tmp_path / "1053400385.mp4"])
    dataset, _ = build_webvid(csv_file, tmp_path)
    check_schema(dataset, "train")
    assert dataset["video_id"] == ["31353427", "14781349", "1053400385"]
    assert dataset["video"][:2] == [str(tmp_path / "006001_006050/31353427.mp4"), str(tmp_path / "14781349.mp4")]
    assert dataset[0]["captions"] == [
        "Merida, mexico - may 23, 2017: tourists are walking on a roadside near catholic church."
    ]


def test_cc3m_img2dataset_folder(tmp_path):
    root = tmp_path / "cc3m"
    captions = {
        "00000/000000000": "a very typical bus station",
        "00000/000000001": "actor arrives at the premiere",
        "00001/000010000": "a dog runs on the beach",
    }
    for key, caption in captions.items():
        make_media([root / f"{key}.jpg"])
        (root / f"{key}.txt").write_text(caption + "\n")
        (root / f"{key}.json").write_text(json.dumps({"key": key.split("/")[1], "status": "success"}))
    (root / "00000.parquet").write_bytes(b"PAR1")
    dataset, report = build_cc3m(root)
    check_schema(dataset, "train", media_type="image")
    assert dataset["video_id"] == ["000000000", "000000001", "000010000"]
    assert dataset["captions"] == [[c] for c in captions.values()]
    assert len(report) == 0

    make_media([root / "00001/000010001.jpg"])  # a caption file is missing
    with pytest.raises(AnnotationError, match=r"000010001\.txt"):
        build_cc3m(root)
    assert len(build_cc3m(root, skip_bad=True)[1]) == 1

    (tmp_path / "webdataset").mkdir()
    (tmp_path / "webdataset/00000.tar").write_bytes(b"")
    with pytest.raises(AnnotationError, match="output_format files"):
        build_cc3m(tmp_path / "webdataset")


def test_cc3m_caption_tables(tmp_path):
    without_header, _ = with_media(build_cc3m, tmp_path, FIXTURES / "cc3m/cc3m_train_downloaded.tsv")
    check_schema(without_header, "train", media_type="image")
    assert without_header["video_id"] == ["00000/000000000.jpg", "00000/000000001.jpg", "00001/000010000.jpg"]
    assert without_header[0]["captions"] == ["a very typical bus station"]

    with_header, _ = build_cc3m(tmp_path, FIXTURES / "cc3m/cc3m_val_header.tsv", split="val")
    assert with_header["video_id"] == ["00000/000000001.jpg", "00000/000000000.jpg"]
    assert with_header[1]["captions"] == ["a very typical bus station"]

    with pytest.raises(AnnotationError, match=r"Train_GCC-training\.tsv, line 1: .*URL.*img2dataset"):
        build_cc3m(tmp_path, FIXTURES / "cc3m/Train_GCC-training.tsv")


# ---------------------------------------------------------------- errors, shared by every format


@dataclass
class Format:
    """One annotation format: how to build it from a copy of its fixture folder, and how to break it."""

    folder: str
    main_file: str  # the file the error cases corrupt or remove
    build: Callable  # (annotation folder, media root, **kwargs)
    caption: str  # a caption (as written in main_file) the empty-caption case blanks out
    entry: str  # how the errors name that caption's entry
    rows: int
    video_list: str = ""  # the file that lists the videos, if not main_file

    def __post_init__(self):
        self.video_list = self.video_list or self.main_file


FORMATS = {
    "vindlu_json": Format(
        folder="vindlu",
        main_file="msrvtt_ret_train9k.json",
        build=lambda d, root, **kw: build_vindlu_json(d / "msrvtt_ret_train9k.json", root, **kw),
        caption='"a woman is slicing vegetables in a kitchen"',
        entry="msrvtt_ret_train9k.json, entry 2",
        rows=3,
    ),
    "msrvtt_9k": Format(
        folder="msrvtt",
        main_file="MSRVTT_data.json",
        build=lambda d, root, **kw: build_msrvtt(root, "train_9k", annotation_dir=d, **kw),
        caption='"a cartoon girl talks to her friend"',
        entry="MSRVTT_data.json, sentence 1 (sen_id 1)",
        rows=5,
        video_list="MSRVTT_train.9k.csv",
    ),
    "msrvtt_1k_a": Format(
        folder="msrvtt",
        main_file="MSRVTT_JSFUSION_test.csv",
        build=lambda d, root, **kw: build_msrvtt(root, "test_1k_a", annotation_dir=d, **kw),
        caption="a little girl does gymnastics",
        entry="MSRVTT_JSFUSION_test.csv, line 3 (key ret1)",
        rows=3,
    ),
    "didemo": Format(
        folder="didemo",
        main_file="test_data.json",
        build=lambda d, root, **kw: build_didemo(d / "test_data.json", root, **kw),
        caption='"the camera pans across a parking lot"',
        entry="test_data.json, entry 3 (annotation_id 24587)",
        rows=3,
    ),
    "activitynet": Format(
        folder="activitynet",
        main_file="val_1.json",
        build=lambda d, root, **kw: build_activitynet(d / "val_1.json", root, **kw),
        caption='" One lifts the bar over his head and drops it back down."',
        entry="val_1.json, entry 1 (video 'v_ehGHCYKzyZ8')",
        rows=3,
    ),
    "webvid": Format(
        folder="webvid",
        main_file="results_2M_val.csv",
        build=lambda d, root, **kw: build_webvid(d / "results_2M_val.csv", root, **kw),
        caption="Happy family using laptop on bed at home",
        entry="results_2M_val.csv, line 3 (videoid 14781349)",
        rows=3,
    ),
    "cc3m": Format(
        folder="cc3m",
        main_file="cc3m_train_downloaded.tsv",
        build=lambda d, root, **kw: build_cc3m(root, d / "cc3m_train_downloaded.tsv", **kw),
        caption="a very typical bus station",
        entry="cc3m_train_downloaded.tsv, line 1",
        rows=3,
    ),
}


@pytest.fixture(params=sorted(FORMATS))
def case(request, tmp_path):
    """A copy of the format's fixture folder under tmp_path/annotations; media files under tmp_path/media."""
    form = FORMATS[request.param]
    annotations = tmp_path / "annotations"
    shutil.copytree(FIXTURES / form.folder, annotations)
    return form, annotations, tmp_path / "media"


def test_missing_annotation_file(case):
    form, annotations, media = case
    (annotations / form.main_file).unlink()
    with pytest.raises(FileNotFoundError, match=form.main_file):
        form.build(annotations, media)


def test_non_utf8_annotation_file(case):
    form, annotations, media = case
    (annotations / form.main_file).write_bytes("caf\u00e9, cr\u00e8me br\u00fbl\u00e9e".encode("latin-1"))
    with pytest.raises(AnnotationError, match=rf"{form.main_file}.*UTF-8"):
        form.build(annotations, media)


def test_empty_caption(case):
    form, annotations, media = case
    with_media(form.build, annotations, media)
    path = annotations / form.main_file
    text = path.read_text()
    assert text.count(form.caption) == 1
    path.write_text(text.replace(form.caption, '" "' if form.caption.startswith('"') else ""))
    with pytest.raises(AnnotationError, match="empty caption") as error:
        form.build(annotations, media)
    assert form.entry in str(error.value)

    dataset, report = form.build(annotations, media, skip_bad=True)
    assert len(report) == 1
    assert report.skipped[0][0].endswith(form.entry)
    assert sum(len(c) for c in dataset["captions"]) > 0


def test_missing_video_file(case):
    form, annotations, media = case
    dataset, _ = form.build(annotations, media, check_files=False)
    assert len(dataset) == form.rows
    missing = dataset["video"][1]
    make_media(dataset["video"][:1] + dataset["video"][2:])
    with pytest.raises(AnnotationError, match="not found") as error:
        form.build(annotations, media)
    assert form.video_list in str(error.value) and missing in str(error.value)

    dataset, report = form.build(annotations, media, skip_bad=True)
    assert len(dataset) == form.rows - 1 and missing not in dataset["video"]
    assert len(report) == 1 and missing in report.skipped[0][1]


# ---------------------------------------------------------------- malformed entries


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "builder, data, message",
    [
        (build_vindlu_json, [{"video": "a.mp4"}], r"x\.json, entry 0: missing key 'caption'"),
        (build_vindlu_json, [{"caption": "a dog"}], r"x\.json, entry 0: missing key 'video'"),
        (build_vindlu_json, [{"video": "a.mp4", "caption": 3}], r"entry 0: 'caption' must be a string or a list"),
        (build_vindlu_json, [{"video": "a.mp4", "caption": ["ok", None]}], r"entry 0: caption\[1\] must be a string"),
        (build_vindlu_json, [{"video": ["a.mp4", "b.mp4"], "caption": "x"}], r"entry 0: 'video' lists several files"),
        (build_didemo, [{"video": "a.mov", "description": "x", "times": [[2, 1]]}], r"entry 0: each of 'times'"),
        (build_didemo, [{"video": "a.mov", "description": "x"}], r"entry 0: missing key 'times'"),
        (build_activitynet, {"v_a": {"timestamps": [[0, 1]], "sentences": "x"}}, r"'sentences' must be list"),
        (build_activitynet, {"v_a": {"timestamps": [[0, 1]], "sentences": ["x", "y"]}}, "2 sentences but 1 timestamps"),
    ],
)
def test_malformed_entries(tmp_path, builder, data, message):
    path = _write_json(tmp_path / "x.json", data)
    with pytest.raises(AnnotationError, match=message):
        builder(path, tmp_path, check_files=False)
    # Every entry skipped: no rows, which is an error of its own (carrying the skip report).
    with pytest.raises(EmptySplitError, match="has no rows") as error:
        builder(path, tmp_path, check_files=False, skip_bad=True)
    assert len(error.value.report) == 1


@pytest.mark.parametrize(
    "builder, data, message",
    [(build_vindlu_json, {"video": "a.mp4"}, "expected a list"), (build_activitynet, [], "expected an object")],
)
def test_malformed_files_raise_even_when_skipping(tmp_path, builder, data, message):
    with pytest.raises(AnnotationError, match=rf"x\.json: {message}"):
        builder(_write_json(tmp_path / "x.json", data), tmp_path, skip_bad=True)


def test_invalid_json_and_csv_headers(tmp_path):
    broken = tmp_path / "train_data.json"
    broken.write_text('[{"video": "a.mov",\n "description": }]')
    with pytest.raises(AnnotationError, match=r"train_data\.json is not valid JSON: .* line 2"):
        build_didemo(broken, tmp_path)
    headerless = tmp_path / "results_2M_train.csv"
    headerless.write_text("31353427,https://example.com/a.mp4,PT00H00M15S,006001_006050,a caption\n")
    with pytest.raises(AnnotationError, match=r"results_2M_train\.csv: missing column\(s\) \['videoid', 'name'\]"):
        build_webvid(headerless, tmp_path)


# ---------------------------------------------------------------- registry


def test_registry(tmp_path):
    assert set(BUILDERS) == {"vindlu_json", "msrvtt", "didemo", "activitynet", "webvid", "cc3m", "synthetic"}
    dataset, _ = build(
        "vindlu_json",
        annotation_file=FIXTURES / "vindlu/msrvtt_ret_train9k.json",
        video_root=tmp_path,
        check_files=False,
    )
    assert len(dataset) == 3
    with pytest.raises(ValueError, match=r"'msvd'.*activitynet.*cc3m.*didemo.*msrvtt.*vindlu_json.*webvid"):
        build("msvd")


def test_synthetic_builder_renders_once_and_loads_each_split(tmp_path):
    from processing.builders import build

    test, skipped = build("synthetic", split="test", out_dir=str(tmp_path), num_videos=8, seed=3, workers=1,
                          progress=False)
    val, _ = build("synthetic", split="val", out_dir=str(tmp_path), num_videos=8, seed=3, workers=1, progress=False)
    assert len(test) == 2 and len(val) == 1 and len(skipped) == 0
    assert all(len(captions) >= 3 for captions in test["captions"])
    paragraph, _ = build("synthetic", split="test", out_dir=str(tmp_path), num_videos=8, seed=3, paragraph=True,
                         workers=1, progress=False)
    assert all(len(captions) == 1 for captions in paragraph["captions"])
    with pytest.raises(ValueError, match="split='dev' is not a split"):
        build("synthetic", split="dev", out_dir=str(tmp_path), num_videos=8, seed=3, workers=1, progress=False)
