"""The saved-index loaders check their JSON (issue 13, point 8): unique ids, required keys, types; every error names
the file and the field."""

import json
import shutil

import pytest
import torch
from tiny_media import write_grey_video
from tiny_models import tiny_config, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.retrieval.index import load_index
from modeling_t2v2t.retrieval.retriever import VideoRetriever


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    model = T2V2TModel(tiny_config()).eval()
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(model.config), tiny_tokenizer(folder),
                               max_length=12)
    retriever = VideoRetriever(model, processor, show_progress=False)
    paths = [str(write_grey_video(folder / f"clip{i}.mp4", num_frames=6, step=7 + 6 * i)) for i in range(3)]
    retriever.index_videos(paths, video_ids=["a", "b", "c"])
    retriever.save(folder / "retriever")
    return {"folder": folder / "retriever", "model": model, "processor": processor}


def _tampered(saved, tmp_path, file: str, change) -> str:
    folder = tmp_path / "copy"
    shutil.copytree(saved["folder"], folder)
    path = folder / file
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return str(folder)


def test_an_untouched_save_loads(saved):
    retriever = VideoRetriever.load(saved["folder"], saved["model"], saved["processor"])
    assert retriever.video_ids == ["a", "b", "c"]


CASES = {
    "duplicate id": ("videos.json", lambda d: d["video_ids"].__setitem__(2, "a"),
                     r"videos\.json: 'video_ids' must be unique; repeated: \['a'\]"),
    "missing ids": ("videos.json", lambda d: d.pop("video_ids"), r"videos\.json: the required field 'video_ids'"),
    "id not a string": ("videos.json", lambda d: d["video_ids"].__setitem__(1, 7),
                        r"videos\.json: video_ids\[1\] must be a string, got 7"),
    "paths of another length": ("videos.json", lambda d: d["paths"].pop(),
                                r"videos\.json: 'video_ids' has 3 entries but 'paths' has 2"),
    "missing backend": ("retriever.json", lambda d: d.pop("index_backend"),
                        r"retriever\.json: the required field 'index_backend' is missing"),
    "embed_dim a string": ("retriever.json", lambda d: d.__setitem__("embed_dim", "16"),
                           r"retriever\.json: the field 'embed_dim' must be an integer or null, got \"16\""),
    "num_videos a bool": ("retriever.json", lambda d: d.__setitem__("num_videos", True),
                          r"retriever\.json: the field 'num_videos' must be an integer, got true"),
    "model hash missing": ("retriever.json", lambda d: d["model"].pop("config_hash"),
                           r"retriever\.json \(field 'model'\): the required field 'config_hash'"),
    "bad skipped entry": ("retriever.json", lambda d: d.__setitem__("skipped", [["x.mp4"]]),
                          r"retriever\.json: skipped\[0\] must be a \[path, reason\] pair"),
    "index count missing": ("index/index.json", lambda d: d.pop("num_embeddings"),
                            r"index\.json: the required field 'num_embeddings' is missing"),
    "index params a list": ("index/index.json", lambda d: d.__setitem__("params", []),
                            r"index\.json: the field 'params' must be an object, got \[\]"),
    "negative count": ("index/index.json", lambda d: d.__setitem__("num_embeddings", -1),
                       r"index\.json: the field 'num_embeddings' must not be negative"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_save_raises_naming_the_file_and_field(saved, tmp_path, case):
    file, change, message = CASES[case]
    folder = _tampered(saved, tmp_path, file, change)
    with pytest.raises(ValueError, match=message):
        VideoRetriever.load(folder, saved["model"], saved["processor"])


def test_index_json_that_is_not_json_or_not_an_object(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved["folder"], folder)
    (folder / "index" / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"index\.json is not valid JSON"):
        load_index(folder / "index")
    (folder / "index" / "index.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"index\.json: expected a JSON object, got a list"):
        load_index(folder / "index")
