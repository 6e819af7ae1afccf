"""The convolutional stem (`patch_embedding="conv_stem"`, Xiao et al. 2021) of a from-scratch video tower: its
computation written out by hand, its token grid, its config checks, and that it never starts from a pretrained
image checkpoint (whose patch projection is linear)."""

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config, tiny_inputs
from transformers import BeitConfig

from modeling_t2v2t import T2V2TConfig, T2V2TModel
from modeling_t2v2t.configuration_t2v2t import T2V2TVisionConfig
from modeling_t2v2t.modeling_video_encoder import PatchEmbeddings
from modeling_t2v2t.tower_loading import vision_config_from_image_config

STEM = dict(patch_embedding="conv_stem", conv_stem_channels=[4, 6])


def randomised_stem(config: T2V2TVisionConfig) -> PatchEmbeddings:
    """A stem with random weights and random BatchNorm statistics, in eval mode (running statistics)."""
    torch.manual_seed(0)
    embeddings = PatchEmbeddings(config)
    with torch.no_grad():
        for parameter in embeddings.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
        for module in embeddings.stem:
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn_like(module.running_mean))
                module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
    return embeddings.eval()


def test_stem_is_strided_3x3_convs_with_batchnorm_and_relu_then_a_patchify_conv():
    config = T2V2TVisionConfig(image_size=32, patch_size=8, hidden_size=16, num_attention_heads=4, **STEM)
    stem = randomised_stem(config)
    frames = torch.randn(5, 3, 32, 32)

    hidden = frames
    for conv, norm in ((stem.stem[0], stem.stem[1]), (stem.stem[3], stem.stem[4])):
        hidden = F.conv2d(hidden, conv.weight, stride=2, padding=1)  # 3x3, halves the frame, no bias (BN follows)
        hidden = (hidden - norm.running_mean[:, None, None]) / torch.sqrt(norm.running_var[:, None, None] + norm.eps)
        hidden = torch.relu(hidden * norm.weight[:, None, None] + norm.bias[:, None, None])
    # 32 -> 16 -> 8 pixels; the patchify conv takes the remaining factor 8 / 4 = 2.
    assert hidden.shape == (5, 6, 8, 8)
    patches = F.conv2d(hidden, stem.projection.weight, stem.projection.bias, stride=2)  # (5, 16, 4, 4)
    expected = patches.flatten(2).transpose(1, 2)

    torch.testing.assert_close(stem(frames), expected, rtol=0, atol=1e-5)
    assert stem.stem[0].kernel_size == (3, 3) and stem.projection.kernel_size == (2, 2)


def test_stem_keeps_the_token_grid_and_trains_through_the_model():
    config = tiny_config(vision_config=STEM)
    model = T2V2TModel(config)
    inputs = tiny_inputs(config)
    output = model(**inputs, return_loss=True)
    vision = config.vision_config
    tokens = 1 + (vision.image_size // vision.patch_size) ** 2
    assert output.vision_last_hidden_state.shape == (4, vision.num_frames, tokens, vision.hidden_size)
    output.loss.backward()
    assert model.vision_model.embeddings.patch_embeddings.stem[0].weight.grad.abs().sum() > 0
    # Training updates the BatchNorm statistics that evaluation then uses.
    assert model.vision_model.embeddings.patch_embeddings.stem[1].num_batches_tracked.item() == 1


def test_linear_default_has_no_stem():
    embeddings = PatchEmbeddings(T2V2TVisionConfig(image_size=32, patch_size=8, hidden_size=16,
                                                   num_attention_heads=4))
    assert embeddings.stem is None
    assert [name for name, _ in embeddings.named_parameters()] == ["projection.weight", "projection.bias"]


def test_save_and_load_restores_the_stem_and_its_statistics(tmp_path):
    config = tiny_config(vision_config=STEM)
    model = T2V2TModel(config)
    model(**tiny_inputs(config), return_loss=True)  # one training-mode pass moves the running statistics
    model.eval().save_pretrained(tmp_path)
    loaded = T2V2TModel.from_pretrained(tmp_path).eval()
    assert loaded.config.vision_config.patch_embedding == "conv_stem"
    assert list(loaded.config.vision_config.conv_stem_channels) == [4, 6]
    norm, loaded_norm = (m.vision_model.embeddings.patch_embeddings.stem[1] for m in (model, loaded))
    torch.testing.assert_close(loaded_norm.running_mean, norm.running_mean, rtol=0, atol=0)
    inputs = tiny_inputs(config, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits_per_text, model(**inputs).logits_per_text,
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("fields, message", [
    (dict(patch_embedding="conv"), r"T2V2TVisionConfig\.patch_embedding='conv' is invalid: must be one of"),
    (dict(patch_embedding="conv_stem", conv_stem_channels=[]), r"conv_stem_channels=\[\] is invalid"),
    (dict(patch_embedding="conv_stem", conv_stem_channels=[8, 0]), r"conv_stem_channels=\[8, 0\] is invalid"),
    (dict(patch_embedding="conv_stem", conv_stem_channels=[4, 4, 4, 4]),
     r"patch_size=8 is invalid: must be divisible by 2\*\*len\(conv_stem_channels\) = 16"),
])
def test_config_errors_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        T2V2TVisionConfig(image_size=32, patch_size=8, hidden_size=16, num_attention_heads=4, **fields)


def test_stem_cannot_start_from_a_pretrained_image_checkpoint():
    beit = BeitConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                      intermediate_size=48)
    with pytest.raises(ValueError, match="patch_embedding='conv_stem'.*linear patch projection"):
        vision_config_from_image_config(beit, {"patch_embedding": "conv_stem"})
    assert vision_config_from_image_config(beit, {})["image_size"] == 32


def test_stem_config_round_trips_through_the_model_config():
    config = T2V2TConfig(vision_config=dict(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=4, intermediate_size=48, **STEM))
    reloaded = T2V2TConfig.from_dict(config.to_dict())
    assert reloaded.vision_config.patch_embedding == "conv_stem"
    assert list(reloaded.vision_config.conv_stem_channels) == [4, 6]
