"""Publishing (modeling_t2v2t.hub.publishing, training/push_to_hub.py): the Hub folder built from a trained tiny model
loads as custom code in a fresh process and gives the same features; the card carries the results file's numbers;
the upload goes through huggingface_hub's real HTTP calls to a mocked Hub; bad inputs fail naming the path."""

import base64
import json
import os
import shutil
import textwrap
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from test_auto_and_hub_code import tiny_processor, tiny_videos
from remote_code import WITHOUT_PACKAGE, run_without_package
from tiny_models import tiny_config

from modeling_t2v2t import T2V2TModel, save_hub_folder
from modeling_t2v2t.hub.publishing import build_hub_folder, load_retrieval_results, push_folder_to_hub
from training import push_to_hub

CAPTIONS = ["a red square moves left", "a blue circle spins"]
# Distinct values, so a number in the card can only have come from its own key.
RESULTS = {
    "epoch": 3.0,
    "test_embedding_t2v_R1": 11.11, "test_embedding_t2v_R5": 22.22, "test_embedding_t2v_R10": 33.33,
    "test_embedding_t2v_MdR": 4.0, "test_embedding_t2v_MnR": 5.56, "test_embedding_t2v_R50": 66.0,
    "test_embedding_v2t_R1": 12.12, "test_embedding_v2t_R5": 23.23, "test_embedding_v2t_R10": 34.34,
    "test_embedding_v2t_MdR": 6.0, "test_embedding_v2t_MnR": 7.77,
    "test_reranked_t2v_R1": 41.04, "test_reranked_t2v_R5": 52.06, "test_reranked_t2v_R10": 63.06,
    "test_reranked_t2v_MdR": 2.0, "test_reranked_t2v_MnR": 8.88,
    "test_reranked_v2t_R1": 44.94, "test_reranked_v2t_R5": 55.96, "test_reranked_v2t_R10": 66.96,
    "test_reranked_v2t_MdR": 1.0, "test_reranked_v2t_MnR": 9.99,
    "test_mean_recall": 50.0, "test_num_pairs_scored": 12,
}
TRAINING_CONFIG = {"_comment": "tiny", "model_config": {"fusion_mode": "t2v2t"}, "num_frames": 3,
                   "learning_rate": 0.001, "max_steps": 5, "train_data": [{"builder": "synthetic", "split": "train"}],
                   "test_data": {"builder": "synthetic", "split": "test"}, "metric_for_best_model": "mean_recall"}



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder as training/finetune.py leaves it: Hub folder + Trainer files + things that must not be published."""
    root = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    config = tiny_config(bypass_mode="self")
    model = T2V2TModel(config).eval()
    processor = tiny_processor(root / "tok", config)
    folder = save_hub_folder(model, processor, root / "run")
    (folder / "test_results.json").write_text(json.dumps(RESULTS))
    (folder / "all_results.json").write_text(json.dumps({**RESULTS, "train_loss": 1.0}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 5, "epoch": 3.0, "best_global_step": 4,
                                                           "best_metric": 50.0, "log_history": []}))
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "model.safetensors").write_bytes(b"old")
    training_config = root / "train.json"
    training_config.write_text(json.dumps(TRAINING_CONFIG, indent=1))
    return {"folder": folder, "model": model, "processor": processor, "training_config": training_config}


def copy_of(folder: Path, destination: Path) -> Path:
    shutil.copytree(folder, destination, ignore=shutil.ignore_patterns("checkpoint-*"))
    return destination


def test_built_folder_holds_what_the_hub_needs_and_a_card_with_the_real_numbers(trained, tmp_path):
    out = build_hub_folder(trained["folder"], tmp_path / "hub", repo_id="me/t2v2t-tiny",
                           training_config=trained["training_config"])
    names = {path.name for path in out.iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json", "tokenizer_config.json", "modeling_t2v2t.py",
            "configuration_t2v2t.py", "processing_t2v2t.py", "video_processing_t2v2t.py", "README.md", "LICENSE",
            "CITATION.cff", "training_config.json", "test_results.json", "trainer_state.json"} <= names
    assert not names & {"training_args.bin", "checkpoint-4"}  # pickles and old checkpoints stay home
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModel"] == "modeling_t2v2t.T2V2TModel"
    assert (out / "training_config.json").read_bytes() == trained["training_config"].read_bytes()
    assert "Apache License" in (out / "LICENSE").read_text() and "Version 2.0" in (out / "LICENSE").read_text()

    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert "text-to-video-retrieval" in card.data.tags and card.data.pipeline_tag is None
    text = card.text
    assert "| embedding | text→video | 11.1 | 22.2 | 33.3 | 4.0 | 5.6 |" in text
    assert "| embedding | video→text | 12.1 | 23.2 | 34.3 | 6.0 | 7.8 |" in text
    assert "| reranked | text→video | 41.0 | 52.1 | 63.1 | 2.0 | 8.9 |" in text
    assert "| reranked | video→text | 44.9 | 56.0 | 67.0 | 1.0 | 10.0 |" in text
    assert "test split of `synthetic`" in text and "Not evaluated" not in text
    assert 'AutoModel.from_pretrained("me/t2v2t-tiny", trust_remote_code=True)' in text
    assert "step 4, the best validation mean_recall (50.00)" in text and "`learning_rate` | `0.001`" in text
    assert "VindLU: A Recipe for Effective Video-and-Language Pretraining" in text
    assert "T2V2T: Text-to-Video-to-Text Fusion for Text-to-Video Retrieval" in text

    citation = yaml.safe_load((out / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["preferred-citation"]["title"].startswith("T2V2T")
    assert [author["family-names"] for author in citation["references"][0]["authors"]][-1] == "Bertasius"


REMOTE_SCRIPT = WITHOUT_PACKAGE + textwrap.dedent(
    """
    from transformers import AutoModel, AutoProcessor
    folder, videos_file, out_file = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    videos = list(torch.load(videos_file).numpy())
    text = processor(text=["a red square moves left", "a blue circle spins"])
    clips = processor(videos=videos)
    with torch.no_grad():
        scores = model.score_pairs(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                                   pixel_values_videos=clips["pixel_values_videos"]).scores
        torch.save({"class": type(model).__module__, "text": model.get_text_features(**text),
                    "video": model.get_video_features(**clips), "scores": scores}, out_file)
    """
)


@pytest.mark.slow
def test_published_folder_loads_in_a_fresh_process_with_the_same_outputs(trained, tmp_path):
    out = build_hub_folder(trained["folder"], tmp_path / "hub", repo_id="me/t2v2t-tiny")
    videos = tiny_videos()
    remote = run_without_package(REMOTE_SCRIPT, out, videos, tmp_path)
    assert remote["class"].startswith("transformers_modules.")

    model, processor = trained["model"], trained["processor"]
    text, clips = processor(text=CAPTIONS), processor(videos=videos)
    with torch.no_grad():
        text_features, video_features = model.get_text_features(**text), model.get_video_features(**clips)
        scores = model.score_pairs(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                                   pixel_values_videos=clips["pixel_values_videos"]).scores
    # Same weights and code; only the last bit may differ (loaded weights sit at other addresses, CPU kernels may
    # round differently), so the tolerance is far below any real difference.
    torch.testing.assert_close(remote["text"], text_features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(remote["video"], video_features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(remote["scores"], scores, rtol=1e-5, atol=1e-6)


class MockHub:
    """The Hub's HTTP API, as much as create_repo + upload_folder use of it; records every request."""

    def __init__(self):
        self.requests = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host != "huggingface.co":
            return httpx2.Response(500, json={"error": f"unexpected host {request.url.host}"})
        if path == "/api/repos/create":
            body = json.loads(request.content)
            name = f"{body.get('organization')}/{body['name']}"
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{name}", "name": name, "id": name})
        if path == "/api/validate-yaml":  # the Hub checks a README's metadata before the commit
            return httpx2.Response(200, json={"warnings": [], "errors": []})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            # Every file as a regular git blob: its bytes then travel inside the commit payload, where we can read them.
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in files]})
        if "/commit/" in path:
            return httpx2.Response(200, json={"commitUrl": "https://huggingface.co/me/t2v2t-tiny/commit/" + "a" * 40,
                                              "commitOid": "a" * 40})
        return httpx2.Response(404, json={"error": f"not mocked: {request.method} {path}"})

    def find(self, method: str, path_part: str) -> list[httpx2.Request]:
        return [r for r in self.requests if r.method == method and path_part in r.url.path]


@pytest.fixture
def mock_hub():
    hub = MockHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    try:
        yield hub
    finally:
        from huggingface_hub.utils._http import default_client_factory

        huggingface_hub.set_client_factory(default_client_factory)


def test_script_uploads_the_built_folder_through_the_hub_api(trained, tmp_path, mock_hub):
    script = push_to_hub
    folder, commit = script.main([
        str(trained["folder"]), "--repo-id", "me/t2v2t-tiny", "--output-dir", str(tmp_path / "hub"),
        "--training-config", str(trained["training_config"]), "--private", "--token", "hf_test_token",
        "--commit-message", "First T2V2T upload",
    ])
    assert commit.oid == "a" * 40
    assert all(r.url.host == "huggingface.co" for r in mock_hub.requests)
    assert all(r.headers.get("authorization") == "Bearer hf_test_token" for r in mock_hub.requests)

    (create,) = mock_hub.find("POST", "/api/repos/create")
    body = json.loads(create.content)
    assert (body["organization"], body["name"]) == ("me", "t2v2t-tiny")
    assert body.get("visibility") == "private" or body.get("private") is True  # huggingface_hub 2.x / 1.x payloads
    assert body.get("type", "model") == "model"

    (validation,) = mock_hub.find("POST", "/api/validate-yaml")
    assert json.loads(validation.content) == {"content": (folder / "README.md").read_text(), "repoType": "model"}

    commits = mock_hub.find("POST", "/api/models/me/t2v2t-tiny/commit/main")
    assert len(commits) == 1
    lines = [json.loads(line) for line in commits[0].content.decode().splitlines() if line]
    assert lines[0] == {"key": "header", "value": {"summary": "First T2V2T upload", "description": ""}}
    uploaded = {entry["value"]["path"]: base64.b64decode(entry["value"]["content"])
                for entry in lines[1:] if entry["key"] == "file"}
    local = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert uploaded == local  # every built file, byte for byte, and nothing else
    assert "README.md" in uploaded and "model.safetensors" in uploaded


def test_dry_run_builds_without_touching_the_network(trained, tmp_path, mock_hub):
    script = push_to_hub
    folder, commit = script.main([str(trained["folder"]), "--output-dir", str(tmp_path / "hub"), "--dry-run"])
    assert commit is None and (folder / "README.md").is_file() and mock_hub.requests == []
    with pytest.raises(SystemExit):  # an upload needs to know where to go
        script.parse_args([str(trained["folder"])])


def test_card_says_not_evaluated_without_results(trained, tmp_path):
    folder = copy_of(trained["folder"], tmp_path / "run")
    for name in ("test_results.json", "all_results.json"):
        (folder / name).unlink()
    out = build_hub_folder(folder, tmp_path / "hub", repo_id="me/t2v2t-tiny")
    text = (out / "README.md").read_text()
    assert "**Not evaluated**" in text and "| stage | direction |" not in text
    assert "The training configuration was not published" in text and "training_config.json" not in os.listdir(out)


def test_evaluate_script_report_fills_the_table(trained, tmp_path):
    report = {"dataset": "msrvtt", "dataset_kwargs": {"split": "test_1k_a"}, "num_videos": 1000, "num_texts": 1000,
              "metrics": {"embedding": {"t2v_R1": 43.8, "t2v_R5": 70.3, "t2v_R10": 79.5, "t2v_MdR": 2.0,
                                        "t2v_MnR": 15.25, "mean_recall": 60.0}}}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(report))
    out = build_hub_folder(trained["folder"], tmp_path / "hub", repo_id="me/t2v2t-tiny", results_file=path)
    text = (out / "README.md").read_text()
    assert "| embedding | text→video | 43.8 | 70.3 | 79.5 | 2.0 | 15.2 |" in text
    assert "| embedding | video→text | – | – | – | – | – |" in text and "| reranked |" not in text
    assert "test_1k_a split of `msrvtt` (1000 videos, 1000 captions)" in text


def test_bad_inputs_fail_naming_the_path(trained, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_hub_folder(missing, tmp_path / "hub", repo_id="me/x")

    no_weights = copy_of(trained["folder"], tmp_path / "no_weights")
    (no_weights / "model.safetensors").rename(no_weights / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=rf"No safetensors weights .* in {no_weights}; found pytorch_model"):
        build_hub_folder(no_weights, tmp_path / "hub", repo_id="me/x")

    no_auto_map = copy_of(trained["folder"], tmp_path / "no_auto_map")
    config = json.loads((no_auto_map / "config.json").read_text())
    del config["auto_map"]
    (no_auto_map / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{no_auto_map / 'config.json'} has no auto_map"):
        build_hub_folder(no_auto_map, tmp_path / "hub", repo_id="me/x")

    bad_json = copy_of(trained["folder"], tmp_path / "bad_json")
    (bad_json / "test_results.json").write_text('{"test_reranked_t2v_R1": 4')
    with pytest.raises(ValueError, match=rf"{bad_json / 'test_results.json'} \(evaluation results\) is not valid JSON"):
        build_hub_folder(bad_json, tmp_path / "hub", repo_id="me/x")

    bad_value = tmp_path / "bad_value.json"
    bad_value.write_text(json.dumps({"test_reranked_t2v_R1": "high"}))
    with pytest.raises(ValueError, match=rf"{bad_value}: metric 'test_reranked_t2v_R1' must be a finite number"):
        load_retrieval_results(bad_value)
    no_metrics = tmp_path / "no_metrics.json"
    no_metrics.write_text(json.dumps({"train_loss": 1.0}))
    with pytest.raises(ValueError, match=rf"{no_metrics} holds no retrieval metrics"):
        build_hub_folder(trained["folder"], tmp_path / "hub", repo_id="me/x", results_file=no_metrics)

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=str(occupied)):
        build_hub_folder(trained["folder"], occupied, repo_id="me/x")
    assert (occupied / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="must not be the model folder"):
        build_hub_folder(trained["folder"], trained["folder"], repo_id="me/x", overwrite=True)
    assert (trained["folder"] / "model.safetensors").is_file()


def test_push_refuses_a_folder_that_would_not_load(tmp_path, mock_hub):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        push_folder_to_hub(tmp_path / "empty", "me/x", token="hf_test_token")
    assert mock_hub.requests == []
