"""The `t2v2t` command (index / search / info) run as a subprocess on the shipped demo checkpoint and gallery, offline;
its results are checked against the library (`VideoRetriever`) in this process. Also: the console script that
`pip install` writes runs, inputs from a dataset file, and `VideoRetriever.index_videos` on a folder."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_config, tiny_tokenizer

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from modeling_t2v2t.retrieval import cli
from modeling_t2v2t.retrieval.retriever import VideoRetriever
from modeling_t2v2t.retrieval.video_files import find_videos

ROOT = Path(__file__).parents[1]
CHECKPOINT = ROOT / "spaces_demo" / "checkpoints" / "t2v2t-synthetic-quickstart"
GALLERY = ROOT / "spaces_demo" / "gallery"
NUM_GALLERY = len(list(GALLERY.glob("*.mp4")))
QUERY = "a small blue square shrinks"


def run_cli(*args: str, cwd: Path, command=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = command or [sys.executable, "-m", "modeling_t2v2t.retrieval.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """The demo gallery spread over nested folders, plus an undecodable .mp4 and a file that is not a video."""
    root = tmp_path_factory.mktemp("my_videos")
    for number, path in enumerate(sorted(GALLERY.glob("*.mp4"))):
        folder = root / ("a" if number % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    (root / "b" / "broken.mp4").write_bytes(b"not a video at all")
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden.mp4").write_bytes(b"hidden files are left out")
    return root


@pytest.fixture(scope="module")
def index_dir(videos, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("work")
    # Relative paths from another working directory: the index must record absolute ones.
    shutil.copytree(CHECKPOINT, work / "ckpt")
    result = run_cli("index", str(videos), "--model", "ckpt", "--out", "my_index", cwd=work)
    return work / "my_index", result


@pytest.mark.slow
def test_index_a_folder_recursively_counting_skips(index_dir, videos):
    index, result = index_dir
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Indexed {NUM_GALLERY} of {NUM_GALLERY + 1} videos" in result.stdout
    assert "1 skipped" in result.stdout and "broken.mp4" in result.stdout
    assert "Indexing videos" in result.stderr  # the tqdm progress bar
    listed = json.loads((index / "videos.json").read_text())
    assert len(listed["video_ids"]) == NUM_GALLERY
    assert "a/test_00001.mp4" in listed["video_ids"] and "b/c/test_00000.mp4" in listed["video_ids"]
    assert all(os.path.isabs(path) and os.path.isfile(path) for path in listed["paths"])
    config = json.loads((index / "retriever.json").read_text())
    assert config["index_backend"] == "exact"  # 32 videos: an exact scan
    assert [Path(path).name for path, _ in config["skipped"]] == ["broken.mp4"]
    assert config["model"]["name_or_path"] == str(index.parent / "ckpt")


@pytest.mark.slow
def test_search_matches_the_library(index_dir, tmp_path):
    index, _ = index_dir
    result = run_cli("search", str(index), QUERY, "-k", "5", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert output["query"] == QUERY and [hit["rank"] for hit in output["hits"]] == [1, 2, 3, 4, 5]
    scores = [hit["score"] for hit in output["hits"]]
    assert scores == sorted(scores, reverse=True) and all(hit["embedding_score"] is None for hit in output["hits"])

    model = T2V2TModel.from_pretrained(CHECKPOINT).eval()
    processor = T2V2TProcessor.from_pretrained(CHECKPOINT)
    expected = VideoRetriever.load(index, model, processor).search(QUERY, k=5)[0]
    assert [hit["video_id"] for hit in output["hits"]] == [hit.video_id for hit in expected]
    assert scores == pytest.approx([hit.score for hit in expected], abs=1e-5)

    reranked = run_cli("search", str(index), QUERY, "-k", "3", "--rerank", "--rerank-k", "8", "--json",
                       cwd=tmp_path)
    assert reranked.returncode == 0, reranked.stderr[-3000:]
    hits = json.loads(reranked.stdout)["hits"]
    expected = VideoRetriever.load(index, model, processor).search(QUERY, k=3, rerank=True, rerank_k=8)[0]
    assert [hit["video_id"] for hit in hits] == [hit.video_id for hit in expected]
    assert [hit["embedding_score"] for hit in hits] == pytest.approx([hit.embedding_score for hit in expected],
                                                                     abs=1e-5)

    table = run_cli("search", str(index), QUERY, "another query", "-k", "2", cwd=tmp_path)
    assert table.returncode == 0, table.stderr[-3000:]
    lines = table.stdout.splitlines()
    assert lines[0] == f"query: {QUERY}" and lines[1].split() == ["rank", "score", "video", "path"]
    assert lines[2].split()[0] == "1" and lines[2].split()[2] == output["hits"][0]["video_id"]
    assert "query: another query" in table.stdout


@pytest.mark.slow
def test_info(index_dir, tmp_path):
    index, _ = index_dir
    result = run_cli("info", str(index), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout)
    assert info["num_videos"] == NUM_GALLERY and info["num_skipped"] == 1 and info["embed_dim"] == 128
    assert info["model"] == str(index.parent / "ckpt") and info["model_class"] == "T2V2TModel"
    assert info["size_bytes"] == sum(path.stat().st_size for path in index.rglob("*") if path.is_file())
    text = run_cli("info", str(index), cwd=tmp_path).stdout
    assert f"videos     {NUM_GALLERY} (1 skipped while indexing)" in text and "T2V2TModel" in text


def test_errors_are_one_line_and_name_the_problem(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no videos here")
    status = cli.main(["index", str(tmp_path / "empty"), "--model", str(CHECKPOINT), "--out", str(tmp_path / "x")])
    error = capsys.readouterr().err
    assert status == 2 and f"t2v2t index: error: No video files found in {tmp_path / 'empty'}" in error
    assert "Traceback" not in error and not (tmp_path / "x").exists()
    assert cli.main(["search", str(tmp_path / "empty"), "a query"]) == 2
    assert "is not a t2v2t index: retriever.json is missing" in capsys.readouterr().err
    assert cli.main(["index", str(tmp_path / "missing"), "--model", str(CHECKPOINT), "--out", "x"]) == 2
    assert "missing does not exist" in capsys.readouterr().err


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = EntryPoint(name="t2v2t", value=scripts["t2v2t"], group="console_scripts")
    assert entry.load() is cli.main


@pytest.mark.slow
def test_pip_install_writes_a_working_t2v2t_command(tmp_path):
    """Install the package (no dependencies: they are this environment's) into a folder, from a copy of the source
    so nothing is built inside the repository, and run the `t2v2t` script pip wrote."""
    source = tmp_path / "src"
    for name in ("modeling_t2v2t", "processing", "training"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "--target", str(target), str(source)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    script = target / "bin" / "t2v2t"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not this checkout
    result = subprocess.run([sys.executable, str(script), "info", "--help"], env=env, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and "Describe a saved index" in result.stdout


# ----- inputs, in process ---------------------------------------------------------------------------------------
def test_dataset_file_input(tmp_path, videos):
    """A VindLU-style annotation file (one row per caption) lists each video once; relative paths start from the
    file's folder or --video-root."""
    rows = [{"video": "a/test_00001.mp4", "caption": "one"}, {"video": "a/test_00001.mp4", "caption": "two"},
            {"video": "b/c/test_00000.mp4", "caption": "three"}]
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps(rows))
    paths, ids = cli.collect_videos(str(annotations), video_root=str(videos))
    assert ids == ["a/test_00001.mp4", "b/c/test_00000.mp4"]
    assert paths == [str(videos / "a" / "test_00001.mp4"), str(videos / "b" / "c" / "test_00000.mp4")]
    (tmp_path / "no_video.json").write_text(json.dumps([{"caption": "x"}]))
    with pytest.raises(ValueError, match="needs a 'video' column"):
        cli.collect_videos(str(tmp_path / "no_video.json"))


def test_find_videos_by_extension(videos):
    found = find_videos(videos)
    assert len(found.paths) == NUM_GALLERY + 1 and found.paths == sorted(found.paths)  # broken.mp4 is listed
    assert found.num_other_files == 1  # notes.txt; .hidden.mp4 is neither
    assert find_videos(videos, extensions=["txt"]).paths == [str(videos / "notes.txt")]


def test_index_videos_accepts_a_folder(tmp_path):
    """`VideoRetriever.index_videos(folder)` indexes the videos under it (recursively) like the list of them; a
    folder without videos raises instead of indexing nothing."""
    from tiny_media import write_grey_video

    torch.manual_seed(0)
    config = tiny_config()
    model = T2V2TModel(config).eval()
    processor = T2V2TProcessor(T2V2TVideoProcessor.from_vision_config(config), tiny_tokenizer(tmp_path / "tok"),
                               max_length=12)
    (tmp_path / "clips" / "deeper").mkdir(parents=True)
    paths = [write_grey_video(tmp_path / "clips" / name, num_frames=6, step=7 + 6 * i)
             for i, name in enumerate(["b.mp4", "deeper/a.MP4", "c.webm.mp4"])]
    (tmp_path / "clips" / "list.txt").write_text("x")
    from_folder = VideoRetriever(model, processor, show_progress=False)
    assert from_folder.index_videos(tmp_path / "clips") == 3
    from_list = VideoRetriever(model, processor, show_progress=False)
    from_list.index_videos(sorted(str(path) for path in paths))
    assert from_folder.video_ids == from_list.video_ids
    torch.testing.assert_close(from_folder.index.embeddings, from_list.index.embeddings)

    (tmp_path / "no_videos").mkdir()
    (tmp_path / "no_videos" / "list.txt").write_text("x")
    with pytest.raises(ValueError, match=r"No video files found in .*no_videos \(searched recursively"):
        VideoRetriever(model, processor).index_videos(tmp_path / "no_videos")
    with pytest.raises(FileNotFoundError, match="neither a video file nor a folder"):
        VideoRetriever(model, processor).index_videos(str(tmp_path / "nowhere"))
