"""The memo of the frozen text-only stage (training.frozen_text_cache): the same features and the same training
step as computing the stage, each caption computed once, and clear refusals where the stage is not fixed."""

import json
import logging

import pytest
import torch
from test_cret import tiny_cret_config
from test_quickstart_script import tiny_quickstart_config
from test_xpool import tiny_xpool_config
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import CRETModel, T2V2TModel, XPoolModel
from training import finetune
from training.frozen_text_cache import FrozenTextStageCache
from training.model_factory import freeze_text_layers


def frozen_model(fusion_layer: int = 2, **overrides) -> T2V2TModel:
    torch.manual_seed(0)
    text = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **overrides.pop("text_config", {})}
    model = T2V2TModel(tiny_config(fusion_layer=fusion_layer, text_config=text, **overrides)).train()
    freeze_text_layers(model, fusion_layer)
    return model


def loss_and_grads(model, inputs):
    """One training step's loss and every parameter gradient (the same VTM negatives each time)."""
    torch.manual_seed(1)
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_cached_features_equal_the_computed_ones_and_each_caption_is_computed_once():
    model = frozen_model()
    inputs = tiny_inputs(model.config, batch=4)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]  # caption 0 is padded from token 5 on
    expected = model.text_model.encode_text(ids, mask)
    cache = FrozenTextStageCache(model.text_model, max_mb=1).install()

    first = model.text_model.encode_text(ids, mask)
    assert (cache.misses, cache.hits, len(cache.memo)) == (4, 0, 4)
    # Again, in another order and with caption 0 padded to a longer batch: all read from the memo.
    longer_ids = torch.cat([ids, torch.zeros(4, 3, dtype=ids.dtype)], dim=1)[[3, 0]]
    longer_mask = torch.cat([mask, torch.zeros(4, 3, dtype=mask.dtype)], dim=1)[[3, 0]]
    again = model.text_model.encode_text(longer_ids, longer_mask)
    assert (cache.misses, cache.hits) == (4, 2)

    real = mask.bool()
    torch.testing.assert_close(first[real], expected[real], rtol=1e-5, atol=1e-6)
    assert first[~real].abs().max() == 0  # padding comes back as zeros; every use masks it out
    torch.testing.assert_close(again[0, :7], expected[3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again[1, :5], expected[0, :5], rtol=1e-5, atol=1e-6)
    assert again[1, 5:].abs().max() == 0
    cache.uninstall()
    assert "encode_text" not in model.text_model.__dict__


def test_a_training_step_through_the_memo_has_the_same_loss_and_gradients():
    model = frozen_model(vtm_hard_negatives=False)
    inputs = {**tiny_inputs(model.config, batch=4), "return_loss": True}

    loss, grads = loss_and_grads(model, inputs)
    cache = FrozenTextStageCache(model.text_model, max_mb=1).install()
    for _ in range(2):  # the first step fills the memo, the second reads it
        cached_loss, cached_grads = loss_and_grads(model, inputs)
        torch.testing.assert_close(cached_loss, loss, rtol=1e-5, atol=1e-6)
        assert cached_grads.keys() == grads.keys()
        assert not any(name.startswith(("text_model.embeddings", "text_model.encoder.layer.0.",
                                        "text_model.encoder.layer.1.")) for name in grads)
        for name in grads:
            torch.testing.assert_close(cached_grads[name], grads[name], rtol=1e-4, atol=1e-6)
    assert cache.hits == 4 and cache.misses == 4


def test_a_full_memo_keeps_what_it_holds_computes_the_rest_and_says_so_once(caplog):
    model = frozen_model()
    inputs = tiny_inputs(model.config, batch=4)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    expected = model.text_model.encode_text(ids, mask)
    row_bytes = 7 * model.config.text_config.hidden_size * 4  # a 7-token caption in float32
    cache = FrozenTextStageCache(model.text_model, max_mb=2 * row_bytes / 2**20).install()
    with caplog.at_level(logging.WARNING, logger="training.frozen_text_cache"):
        for _ in range(2):
            got = model.text_model.encode_text(ids, mask)
            torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], rtol=1e-5, atol=1e-6)
    assert len(cache.memo) == 2 and cache.stored_bytes <= cache.max_bytes
    assert (cache.hits, cache.misses) == (2, 6)
    assert sum("text-stage cache is full (2 captions" in record.message for record in caplog.records) == 1


def test_features_keep_the_dtype_of_the_stage():
    model = frozen_model().to(torch.bfloat16)
    inputs = tiny_inputs(model.config, batch=3)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    expected = model.text_model.encode_text(ids, mask)
    FrozenTextStageCache(model.text_model, max_mb=1).install()
    for _ in range(2):  # computed, then read from the memo
        got = model.text_model.encode_text(ids, mask)
        assert got.dtype == expected.dtype == torch.bfloat16
        torch.testing.assert_close(got[mask.bool()], expected[mask.bool()])


def test_a_mask_that_is_not_right_padding_is_computed_as_given():
    model = frozen_model()
    inputs = tiny_inputs(model.config, batch=2)
    ids, mask = inputs["input_ids"], inputs["attention_mask"].clone()
    mask[1, 2] = 0  # a hole: no single prefix of tokens to key on
    expected = model.text_model.encode_text(ids, mask)
    cache = FrozenTextStageCache(model.text_model, max_mb=1).install()
    torch.testing.assert_close(model.text_model.encode_text(ids, mask), expected)
    assert len(cache.memo) == 0


def test_the_memo_is_refused_where_the_text_stage_is_not_fixed():
    torch.manual_seed(0)
    partly = T2V2TModel(tiny_config(fusion_layer=2, text_config={"hidden_dropout_prob": 0.0,
                                                                 "attention_probs_dropout_prob": 0.0}))
    freeze_text_layers(partly, 1)
    with pytest.raises(ValueError, match=r"all 2 text-only layers frozen \(freeze_text_layers 2\).*"
                                         r"'encoder.layer.1"):
        FrozenTextStageCache(partly.text_model, max_mb=1)
    with pytest.raises(ValueError, match="needs its dropout off"):
        FrozenTextStageCache(frozen_model(text_config={"hidden_dropout_prob": 0.1}).text_model, max_mb=1)
    with pytest.raises(ValueError, match="max_mb > 0"):
        FrozenTextStageCache(frozen_model().text_model, max_mb=0)


@pytest.mark.slow
def test_finetune_trains_through_the_memo_and_reports_it(tmp_path, caplog):
    path, config = tiny_quickstart_config(tmp_path, steps=12)  # more pairs than the training split holds
    config["model_config"] = {**config["model_config"], "text_config": {
        **config["model_config"]["text_config"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}}
    path.write_text(json.dumps({**config, "freeze_text_layers": 1, "frozen_text_cache_mb": 16}))
    with caplog.at_level(logging.INFO, logger="training.finetune"):
        trainer, _ = finetune.main([str(path)])
    assert "encode_text" not in trainer.model.text_model.__dict__  # removed after training
    report = [record.message for record in caplog.records if "Frozen text-stage cache" in record.message]
    assert len(report) == 1 and " 0 rows read from it" not in report[0], report


@pytest.mark.parametrize("model_type", ["xpool", "cret"])
def test_xpool_and_cret_train_through_the_memo_with_the_same_loss_and_gradients(model_type):
    # The ablation memoises every method's frozen text tower; X-Pool and CRET read token states too (X-Pool's pooled
    # caption, CRET's token adapter), so their step must not see the memo's zeros at padded positions.
    torch.manual_seed(0)
    text = {**tiny_config().text_config.to_dict(), "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model_class, config = (XPoolModel, tiny_xpool_config) if model_type == "xpool" else (CRETModel, tiny_cret_config)
    model = model_class(config(text_config=text)).train()
    freeze_text_layers(model, model.text_model.fusion_layer)
    inputs = {**tiny_inputs(tiny_config(), batch=4), "return_loss": True}

    loss, grads = loss_and_grads(model, inputs)
    cache = FrozenTextStageCache(model.text_model, max_mb=1).install()
    for _ in range(2):  # fills the memo, then reads it
        cached_loss, cached_grads = loss_and_grads(model, inputs)
        torch.testing.assert_close(cached_loss, loss, rtol=1e-5, atol=1e-6)
        assert cached_grads.keys() == grads.keys() and not any(name.startswith("text_model.") for name in grads)
        for name in grads:
            torch.testing.assert_close(cached_grads[name], grads[name], rtol=1e-4, atol=1e-6)
    assert (cache.hits, cache.misses) == (4, 4)
