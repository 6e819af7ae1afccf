"""The contract every dataset builder keeps: one calling convention with argument errors that name the builder and
list its arguments; captions that clean to nothing, media paths outside `video_root` and bad ActivityNet moments
rejected (or counted under `skip_bad`); a split with no rows is an error that says why; and the training
arguments name their datasets explicitly (no synthetic default)."""

import inspect
import json
import logging
from pathlib import Path

import pytest

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
from processing.schema import AnnotationError, EmptySplitError, build_dataset, make_record

FIXTURES = Path(__file__).parent / "fixtures" / "annotations"


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------- calling convention


def test_every_builder_takes_the_shared_argument_names():
    for name, builder in BUILDERS.items():
        parameters = set(inspect.signature(builder).parameters)
        assert "split" in parameters, name
        if name == "synthetic":  # renders its own files: out_dir is both annotation location and video root
            assert "out_dir" in parameters
            continue
        assert {"video_root", "skip_bad", "check_files", "allow_outside_root"} <= parameters, name
        assert parameters & {"annotation_file", "annotation_dir"}, name
    # Corpora whose files are named by split can be found from a folder and the split.
    for name in ("msrvtt", "didemo", "activitynet"):
        assert "annotation_dir" in inspect.signature(BUILDERS[name]).parameters, name


def test_unknown_argument_names_the_builder_and_lists_its_arguments():
    with pytest.raises(ValueError) as error:
        build("activitynet", split="val_1", annotation_folder="captions", video_root="videos")
    message = str(error.value)
    assert "'activitynet'" in message and "build_activitynet" in message and "'annotation_folder'" in message
    for parameter in inspect.signature(build_activitynet).parameters:
        assert parameter in message.split("Valid arguments:")[1], parameter


def test_missing_required_argument_names_it():
    missing = r"'msrvtt' \(build_msrvtt\): missing required argument\(s\) \['video_root'\]"
    with pytest.raises(ValueError, match=missing):
        build("msrvtt", split="test_1k_a", annotation_dir="msrvtt_data")
    missing = r"build_activitynet: missing required argument `video_root`.*Valid arguments"
    with pytest.raises(ValueError, match=missing):
        build("activitynet", split="val_1", annotation_dir=FIXTURES / "activitynet")


@pytest.mark.parametrize(
    "name, old, new, others",
    [("webvid", "csv_file", "annotation_file", {"video_root": "v", "annotation_file": "a"}),
     ("cc3m", "image_root", "video_root", {})],
)
def test_renamed_arguments_say_the_new_name(name, old, new, others):
    with pytest.raises(ValueError, match=rf"unknown argument\(s\) \['{old}'\] \(`{old}` is now `{new}`\)"):
        build(name, **{old: "x", **others})


@pytest.mark.parametrize(
    "name, folder, split, file_name",
    [("activitynet", "activitynet", "val_1", "val_1.json"), ("didemo", "didemo", "test", "test_data.json")],
)
def test_annotation_dir_finds_the_file_of_the_split(tmp_path, name, folder, split, file_name):
    by_dir, _ = build(name, split=split, annotation_dir=FIXTURES / folder, video_root=tmp_path, check_files=False)
    by_file, _ = build(name, annotation_file=FIXTURES / folder / file_name, video_root=tmp_path, check_files=False)
    assert by_dir.to_list() == by_file.to_list() and len(by_dir) == 3
    assert set(by_dir["split"]) == {split}


@pytest.mark.parametrize("builder", [build_activitynet, build_didemo])
def test_annotation_location_is_exactly_one_of_file_or_dir(tmp_path, builder):
    with pytest.raises(ValueError, match=rf"{builder.__name__}: give exactly one of `annotation_file` or `annotation"):
        builder(video_root=tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        builder(tmp_path / "a.json", tmp_path, annotation_dir=tmp_path)
    with pytest.raises(ValueError, match="`annotation_dir` needs `split`"):
        builder(video_root=tmp_path, annotation_dir=tmp_path)


def test_data_arguments_check_builder_arguments_when_parsed():
    from training.arguments import DataArguments

    spec = {"builder": "activitynet", "split": "val_1", "annotation_folder": "captions", "video_root": "videos"}
    with pytest.raises(ValueError, match=r"--train_data: Dataset builder 'activitynet'.*annotation_folder.*Valid"):
        DataArguments(train_data=json.dumps([spec]))
    with pytest.raises(ValueError, match=r"--validation_data: .*'cc3m'.*`image_root` is now `video_root`"):
        DataArguments(train_data='[{"builder": "synthetic", "split": "train"}]',
                      validation_data='{"builder": "cc3m", "image_root": "images"}')


# ---------------------------------------------------------------- no silent synthetic data


def test_training_data_must_be_named():
    from training.arguments import DataArguments

    with pytest.raises(ValueError, match=r"DataArguments.train_data is not set: give --train_data"):
        DataArguments()
    with pytest.raises(ValueError, match="empty list"):
        DataArguments(train_data="[]")
    arguments = DataArguments(train_data='[{"builder": "synthetic", "split": "train"}]')
    assert arguments.validation_data is None and arguments.test_data is None  # nothing added behind the user's back


def test_no_validation_data_means_no_validation_and_says_so(tmp_path, caplog):
    from training.arguments import DataArguments
    from training.data_setup import build_training_data

    spec = {"builder": "vindlu_json", "annotation_file": str(FIXTURES / "vindlu/msrvtt_ret_train9k.json"),
            "video_root": str(tmp_path), "check_files": False}
    with caplog.at_level(logging.WARNING, logger="training.data_setup"):
        pairs, validation, test = build_training_data(DataArguments(train_data=json.dumps([spec])))
    assert validation is None and test is None and len(pairs) == 6
    assert any("No validation_data" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------- captions that clean to nothing


@pytest.mark.parametrize("caption", ["...", " ?! ", "(--)", ["a dog runs", "'\"*#"]])
def test_caption_without_words_is_rejected_naming_file_and_entry(tmp_path, caption):
    path = write_json(tmp_path / "anno.json", [{"video": "a.mp4", "caption": "a cat sleeps"},
                                               {"video": "b.mp4", "caption": caption}])
    with pytest.raises(AnnotationError, match=r"anno\.json, entry 1: empty caption after cleaning"):
        build_vindlu_json(path, tmp_path, check_files=False)
    dataset, report = build_vindlu_json(path, tmp_path, check_files=False, skip_bad=True)
    assert dataset["video_id"] == ["a.mp4"] and len(report) == 1
    assert report.skipped[0][0].endswith("anno.json, entry 1")


def test_msrvtt_sentence_without_words_is_one_skip(tmp_path):
    data = json.loads((FIXTURES / "msrvtt/MSRVTT_data.json").read_text())
    data["sentences"][0]["caption"] = "..."
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    for name in ("MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"):
        (tmp_path / name).write_text((FIXTURES / "msrvtt" / name).read_text())
    with pytest.raises(AnnotationError, match=r"MSRVTT_data\.json, sentence 0 .*empty caption after cleaning"):
        build_msrvtt(tmp_path, "train_9k", annotation_dir=tmp_path, check_files=False)
    dataset, report = build_msrvtt(tmp_path, "train_9k", annotation_dir=tmp_path, check_files=False, skip_bad=True)
    full, _ = build_msrvtt(tmp_path, "train_9k", annotation_dir=FIXTURES / "msrvtt", check_files=False)
    assert len(report) == 1 and len(dataset) == len(full)  # the video keeps its other captions
    assert sum(map(len, dataset["captions"])) == sum(map(len, full["captions"])) - 1


def test_schema_rejects_a_record_whose_caption_cleans_to_nothing():
    record = make_record("/videos/a.mp4", ["a dog", "--"], "a", "train")
    with pytest.raises(AnnotationError, match=r"my\.json, entry 3: video 'a' has an empty caption after cleaning"):
        build_dataset([(record, "my.json, entry 3")], check_files=False)


# ---------------------------------------------------------------- splits with no rows


def test_official_split_with_no_videos_says_how_many_were_filtered_out(tmp_path):
    data = json.loads((FIXTURES / "msrvtt/MSRVTT_data.json").read_text())
    for video in data["videos"]:
        video["split"] = "train"
    path = write_json(tmp_path / "MSRVTT_data.json", data)
    with pytest.raises(EmptySplitError) as error:
        build_msrvtt(tmp_path, "validate", data_json=path, check_files=False)
    message = str(error.value)
    assert "build_msrvtt: split 'validate'" in message and str(path) in message
    assert f"{len(data['videos'])} entries were filtered out because their 'split' is not 'validate'" in message


def test_split_whose_videos_are_all_missing_says_why(tmp_path):
    path = write_json(tmp_path / "anno.json", [{"video": "a.mp4", "caption": "a cat"},
                                               {"video": "b.mp4", "caption": "a dog"}])
    with pytest.raises(EmptySplitError) as error:
        build_vindlu_json(path, tmp_path / "videos", split="val", skip_bad=True)
    message = str(error.value)
    assert "split 'val'" in message and str(path) in message
    assert "2 item(s) were skipped as bad" in message and "not found" in message
    assert len(error.value.report) == 2


def test_empty_annotation_file_is_an_empty_split(tmp_path):
    with pytest.raises(EmptySplitError, match=r"split 'train' from .*empty\.json has no rows: 0 videos"):
        build_vindlu_json(write_json(tmp_path / "empty.json", []), tmp_path)


# ---------------------------------------------------------------- media paths outside video_root


def _outside_cases(tmp_path: Path) -> dict:
    """Per builder, (annotation written into tmp_path, kwargs) whose media paths lead out of `tmp_path/root`."""
    anno = tmp_path / "anno"
    anno.mkdir()
    webvid = anno / "results.csv"
    webvid.write_text("videoid,name,page_dir\n1,a cat,../../elsewhere\n")
    table = anno / "images.tsv"
    table.write_text("a cat\t../secret.jpg\n")
    test_csv = anno / "MSRVTT_JSFUSION_test.csv"
    test_csv.write_text("key,vid_key,video_id,sentence\nret0,msr0,../video0,a cat\n")
    vindlu = write_json(anno / "v.json", [{"video": "../a.mp4", "caption": "a cat"}])
    absolute = write_json(anno / "w.json", [{"video": "/etc/passwd", "caption": "a cat"}])
    didemo = write_json(anno / "test_data.json", [{"video": "../../x.mov", "description": "a cat", "times": [[0, 0]]}])
    anet = write_json(anno / "val_1.json", {"../v_x": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["a cat"]}})
    return {
        "vindlu_json": (build_vindlu_json, dict(annotation_file=vindlu)),
        "vindlu_json absolute": (build_vindlu_json, dict(annotation_file=absolute)),
        "didemo": (build_didemo, dict(annotation_file=didemo)),
        "activitynet": (build_activitynet, dict(annotation_file=anet)),
        "msrvtt": (build_msrvtt, dict(split="test_1k_a", test_csv=test_csv)),
        "webvid": (build_webvid, dict(annotation_file=webvid)),
        "cc3m": (build_cc3m, dict(annotation_file=table)),
    }


@pytest.mark.parametrize(
    "case", ["vindlu_json", "vindlu_json absolute", "didemo", "activitynet", "msrvtt", "webvid", "cc3m"]
)
def test_media_outside_video_root_is_refused_unless_allowed(tmp_path, case):
    builder, kwargs = _outside_cases(tmp_path)[case]
    root = tmp_path / "root"
    with pytest.raises(AnnotationError, match=rf"is outside video_root {root}; pass allow_outside_root=True"):
        builder(video_root=root, check_files=False, **kwargs)
    with pytest.raises(EmptySplitError) as error:  # skip_bad counts it; its only entry gone, the split is empty
        builder(video_root=root, check_files=False, skip_bad=True, **kwargs)
    assert len(error.value.report) == 1 and "outside video_root" in error.value.report.skipped[0][1]
    dataset, report = builder(video_root=root, check_files=False, allow_outside_root=True, **kwargs)
    assert len(dataset) == 1 and len(report) == 0
    assert not dataset["video"][0].startswith(str(root) + "/")


def test_paths_that_stay_inside_the_root_are_accepted(tmp_path):
    path = write_json(tmp_path / "anno.json", [{"video": "sub/../a.mp4", "caption": "a cat"},
                                               {"video": "./b/c.mp4", "caption": "a dog"}])
    dataset, report = build_vindlu_json(path, tmp_path, check_files=False)
    assert len(dataset) == 2 and len(report) == 0


# ---------------------------------------------------------------- ActivityNet moments


def _activitynet(tmp_path: Path, entry: dict) -> Path:
    entry = {"duration": 10.0, "sentences": ["a man talks", "he sings"], **entry}
    good = {"duration": 4.0, "timestamps": [[0, 4]], "sentences": ["a dog"]}
    return write_json(tmp_path / "val_1.json", {"v_ok": good, "v_bad": entry})


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"timestamps": [[0, 5], [6, 3]]}, r"0 <= start <= end, got \[6.0, 3.0\]"),
        ({"timestamps": [[-1, 5], [5, 9]]}, r"0 <= start <= end, got \[-1.0, 5.0\]"),
        ({"timestamps": [[0, 5], [11, 12]]}, r"starts after the video's duration \(10.0 s\)"),
        ({"timestamps": [[0, 5], ["5", 9]]}, r"must be a \[start, end\] pair of numbers"),
        ({"timestamps": [[0, 5], [float("nan"), 9]]}, r"must be finite numbers"),
        ({"timestamps": [[0, 5], [5, 9]], "duration": 0}, r"'duration' must be a positive number"),
        ({"timestamps": [[0, 5], [5, 9]], "duration": "10"}, r"'duration' must be int or float"),
    ],
)
def test_activitynet_moments_are_checked(tmp_path, entry, message):
    path = _activitynet(tmp_path, entry)
    with pytest.raises(AnnotationError, match=rf"val_1\.json, entry 1 \(video 'v_bad'\): .*{message}"):
        build_activitynet(path, tmp_path, check_files=False)
    dataset, report = build_activitynet(path, tmp_path, check_files=False, skip_bad=True)
    assert dataset["video_id"] == ["v_ok"] and len(report) == 1


def test_activitynet_end_past_duration_is_clipped_and_logged(tmp_path, caplog):
    path = _activitynet(tmp_path, {"timestamps": [[0, 5], [5, 10.4]]})
    with caplog.at_level(logging.INFO, logger="processing.builders.activitynet"):
        dataset, report = build_activitynet(path, tmp_path, check_files=False, paragraph=False)
    assert len(report) == 0
    assert dataset[1]["timestamps"] == [[0.0, 5.0], [5.0, 10.0]]
    assert any("clipped 1 moment end" in record.getMessage() for record in caplog.records)
