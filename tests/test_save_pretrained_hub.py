"""Ordinary publishing: importing the package registers every model type for the Auto API at class level, so a plain
`save_pretrained` (and `push_to_hub`, `Trainer.save_model`) writes `auto_map` and the code files, and the folder
loads with `trust_remote_code=True` in a process that cannot import the package, with identical outputs."""

import base64
import json

import pytest
import torch
from test_cret import tiny_cret
from test_push_to_hub import mock_hub  # noqa: F401  (fixture: huggingface_hub's HTTP calls to a mocked Hub)
from test_xpool import assert_loads_without_the_package, tiny_processor, tiny_xpool
from tiny_models import tiny_config
from transformers import Trainer, TrainingArguments

from modeling_t2v2t import T2V2TForPreTraining, T2V2TModel

PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_t2v2t.T2V2TProcessor",
                      "AutoVideoProcessor": "video_processing_t2v2t.T2V2TVideoProcessor"}
MODEL_AUTO_MAP = {
    "t2v2t": {"AutoConfig": "configuration_t2v2t.T2V2TConfig", "AutoModel": "modeling_t2v2t.T2V2TModel"},
    "xpool": {"AutoConfig": "configuration_xpool.XPoolConfig", "AutoModel": "modeling_xpool.XPoolModel"},
    "cret": {"AutoConfig": "configuration_cret.CRETConfig", "AutoModel": "modeling_cret.CRETModel"},
}


def tiny_t2v2t(seed: int = 0) -> T2V2TModel:
    torch.manual_seed(seed)
    return T2V2TModel(tiny_config(bypass_mode="self")).eval()


BUILDERS = {"t2v2t": tiny_t2v2t, "xpool": tiny_xpool, "cret": tiny_cret}


def assert_hub_folder(files: dict[str, bytes], model_type: str) -> None:
    """`files` (name -> bytes) hold auto_map entries naming this model type's classes, and every module they name."""
    config = json.loads(files["config.json"])
    assert config["auto_map"] == MODEL_AUTO_MAP[model_type]
    processor_config = json.loads(files["processor_config.json"])
    assert processor_config["auto_map"] == {"AutoProcessor": PROCESSOR_AUTO_MAP["AutoProcessor"]}
    assert processor_config["video_processor"]["auto_map"] == PROCESSOR_AUTO_MAP
    for reference in [*MODEL_AUTO_MAP[model_type].values(), *PROCESSOR_AUTO_MAP.values()]:
        assert reference.split(".")[0] + ".py" in files, reference
    assert "__init__.py" not in files


@pytest.mark.slow
def test_plain_save_pretrained_loads_as_custom_code_with_identical_outputs(tmp_path):
    models = {name: build(seed=3) for name, build in BUILDERS.items()}
    folders = {}
    for name, model in models.items():
        processor = tiny_processor(tmp_path / f"tok-{name}", model.config)
        folder = tmp_path / name
        model.save_pretrained(folder)  # no register_for_auto_class here: importing the package did it
        processor.save_pretrained(folder)
        assert_hub_folder({path.name: path.read_bytes() for path in folder.iterdir()}, name)
        folders[folder] = (model, processor)

    assert_loads_without_the_package(tmp_path, folders)


def test_pretraining_variant_saves_its_own_auto_class(tmp_path):
    T2V2TForPreTraining(tiny_config()).save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_t2v2t.T2V2TConfig",
                        "AutoModelForPreTraining": "modeling_t2v2t.T2V2TForPreTraining"}
    assert (tmp_path / "modeling_t2v2t.py").is_file() and (tmp_path / "attention_t2v2t.py").is_file()


@pytest.mark.parametrize("model_type", sorted(BUILDERS))
def test_trainer_save_model_writes_code_and_auto_map(tmp_path, model_type):
    model = BUILDERS[model_type]()
    processor = tiny_processor(tmp_path / "tok", model.config)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True)
    Trainer(model=model, args=args, processing_class=processor).save_model(str(tmp_path / "saved"))
    assert_hub_folder({path.name: path.read_bytes() for path in (tmp_path / "saved").iterdir()}, model_type)


@pytest.mark.parametrize("model_type", sorted(BUILDERS))
def test_push_to_hub_uploads_code_and_auto_map(tmp_path, model_type, mock_hub):  # noqa: F811
    model = BUILDERS[model_type]()
    processor = tiny_processor(tmp_path / "tok", model.config)
    model.push_to_hub(f"me/tiny-{model_type}", token="hf_test_token")
    processor.push_to_hub(f"me/tiny-{model_type}", token="hf_test_token")

    uploaded = {}
    for request in mock_hub.find("POST", f"/api/models/me/tiny-{model_type}/commit/main"):
        for line in request.content.decode().splitlines():
            entry = json.loads(line) if line else {}
            if entry.get("key") == "file":
                uploaded[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
    assert_hub_folder(uploaded, model_type)
    assert "model.safetensors" in uploaded


def test_trainer_push_to_hub_uploads_code_and_auto_map(tmp_path, mock_hub):  # noqa: F811
    model = BUILDERS["cret"]()
    processor = tiny_processor(tmp_path / "tok", model.config)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True, push_to_hub=True,
                             hub_model_id="me/tiny-trainer", hub_token="hf_test_token")
    Trainer(model=model, args=args, processing_class=processor).push_to_hub()

    uploaded = {}
    for request in mock_hub.find("POST", "/api/models/me/tiny-trainer/commit/main"):
        for line in request.content.decode().splitlines():
            entry = json.loads(line) if line else {}
            if entry.get("key") == "file":
                uploaded[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
    assert_hub_folder(uploaded, "cret")
    assert "model.safetensors" in uploaded
