"""Auto classes in-process, and Hub custom code: a saved tiny model + processor loads with
`trust_remote_code=True` in a fresh process that cannot import this package, and gives identical outputs."""

import json
import textwrap

import numpy as np
import pytest
import torch
from remote_code import WITHOUT_PACKAGE, run_without_package
from tiny_models import tiny_config, tiny_tokenizer
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor, AutoVideoProcessor

from modeling_t2v2t import (
    T2V2TConfig,
    T2V2TForPreTraining,
    T2V2TModel,
    T2V2TProcessor,
    T2V2TVideoProcessor,
    save_hub_folder,
)

CAPTIONS = ["a red square moves left", "a blue circle spins"]


def tiny_processor(folder, config):
    video_processor = T2V2TVideoProcessor.from_vision_config(config.vision_config)
    return T2V2TProcessor(video_processor, tiny_tokenizer(folder), max_length=12)


def tiny_videos(num_videos=2, frames=5):
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, (frames, 40, 48, 3), dtype=np.uint8) for _ in range(num_videos)]


def test_import_registers_auto_classes(tmp_path):
    config = AutoConfig.for_model("t2v2t", fusion_mode="v2t")
    assert isinstance(config, T2V2TConfig) and config.fusion_mode == "v2t"
    assert type(AutoModel.from_config(tiny_config())) is T2V2TModel
    assert type(AutoModelForPreTraining.from_config(tiny_config())) is T2V2TForPreTraining

    config = tiny_config()
    config.save_pretrained(tmp_path)
    processor = tiny_processor(tmp_path / "tok", config)
    processor.save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is T2V2TProcessor
    assert type(AutoVideoProcessor.from_pretrained(tmp_path)) is T2V2TVideoProcessor


REMOTE_SCRIPT = WITHOUT_PACKAGE + textwrap.dedent(
    """

    from transformers import AutoModel, AutoProcessor
    folder, videos_file, out_file = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    videos = list(torch.load(videos_file).numpy())
    batch = processor(text=["a red square moves left", "a blue circle spins"], videos=videos)
    with torch.no_grad():
        out = model(**batch)
    torch.save({"class": type(model).__module__ + "." + type(model).__name__,
                "processor": type(processor).__module__,
                "input_ids": batch["input_ids"], "pixel_values_videos": batch["pixel_values_videos"],
                "logits_per_text": out.logits_per_text, "vtm_logits": out.vtm_logits}, out_file)
    """
)


@pytest.mark.slow
def test_hub_folder_loads_as_custom_code_in_a_fresh_process(tmp_path):
    config = tiny_config(bypass_mode="null", num_t2v_layers=2)
    model = T2V2TModel(config).eval()
    processor = tiny_processor(tmp_path / "tok", config)
    folder = save_hub_folder(model, processor, tmp_path / "hub")

    saved = {path.name for path in folder.iterdir()}
    code_files = {"configuration_t2v2t.py", "modeling_t2v2t.py", "modeling_video_encoder.py",
                  "modeling_text_encoder.py", "attention_t2v2t.py", "losses_t2v2t.py", "tower_loading.py",
                  "processing_t2v2t.py", "video_processing_t2v2t.py"}
    assert code_files <= saved and "model.safetensors" in saved and "__init__.py" not in saved
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_t2v2t.T2V2TConfig", "AutoModel": "modeling_t2v2t.T2V2TModel"}

    videos = tiny_videos()
    remote = run_without_package(REMOTE_SCRIPT, folder, videos, tmp_path)
    assert remote["class"].startswith("transformers_modules.") and remote["class"].endswith(".T2V2TModel")
    assert remote["processor"].startswith("transformers_modules.")

    batch = processor(text=CAPTIONS, videos=videos)
    with torch.no_grad():
        local = model(**batch)
    assert torch.equal(remote["input_ids"], batch["input_ids"])
    torch.testing.assert_close(remote["pixel_values_videos"], batch["pixel_values_videos"], rtol=0, atol=0)
    torch.testing.assert_close(remote["logits_per_text"], local.logits_per_text, rtol=0, atol=0)
    torch.testing.assert_close(remote["vtm_logits"], local.vtm_logits, rtol=0, atol=0)
