"""X-Pool as its public code trains and feeds it (github.com/layer6ai-labs/xpool): the pooling computes X-Pool's
`Transformer` (modules/transformer.py) with any number of heads, the logit scale keeps its gradient above ln 100
(X-Pool clamps the parameter after each optimizer step, trainer/trainer.py), and on a CLIP backbone frames are
preprocessed exactly as CLIP's own image processor does (shortest-edge resize, centre crop, CLIP's mean/std), not
squashed to a square."""

import math

import numpy as np
import pytest
import torch
from test_xpool import clip_folder, tiny_xpool  # noqa: F401  (fixture)
from tiny_models import tiny_inputs
from transformers import CLIPImageProcessor

from modeling_t2v2t import T2V2TVideoProcessor
from training.arguments import ModelArguments
from training.model_factory import load_model_and_processor

LN_100 = math.log(100)


def xpool_on(backbone, folder):
    if backbone == "towers":
        return tiny_xpool()
    model, _ = load_model_and_processor(ModelArguments(clip_model_name_or_path=str(folder), num_frames=3,
                                                       max_length=24), pretraining=False)
    return model


def xpool_pooling_written_out(pooling, text, frames):
    """X-Pool's pooling for one caption and one video, as its `Transformer.forward` and `MultiHeadedAttention` compute
    it, one head at a time: LayerNorm 1 on the caption and on each frame, head h's query q_h and keys/values (k_fh,
    v_fh) the h-th slice of the projections, weights softmax_f(k_fh . q_h / sqrt(head_dim)), the heads' weighted
    values side by side through out_proj, LayerNorm 2, then LayerNorm 3 of (a + linear_proj(a))."""
    heads, head_dim = pooling.num_heads, pooling.head_dim
    text, frames = pooling.layer_norm1(text), pooling.layer_norm1(frames)
    query, keys, values = pooling.q_proj(text), pooling.k_proj(frames), pooling.v_proj(frames)
    per_head = []
    for head in range(heads):
        part = slice(head * head_dim, (head + 1) * head_dim)
        weights = torch.softmax(keys[:, part] @ query[part] / math.sqrt(head_dim), dim=0)  # over the frames
        per_head.append(weights @ values[:, part])
    attended = pooling.layer_norm2(pooling.out_proj(torch.cat(per_head)))
    return pooling.layer_norm3(attended + pooling.linear_proj(attended))


@pytest.mark.parametrize("heads", [1, 2, 4, 8])
def test_pooling_is_xpools_transformer_with_any_number_of_heads(heads):
    """Random (not identity) weights, so every projection, LayerNorm and the head split matter."""
    pooling = tiny_xpool(num_attention_heads=heads).pooling
    generator = torch.Generator().manual_seed(heads)
    with torch.no_grad():
        for parameter in pooling.parameters():
            parameter.copy_(parameter + 0.3 * torch.randn(parameter.shape, generator=generator))
        texts, frames = torch.randn(3, 16, generator=generator), torch.randn(2, 5, 16, generator=generator)
        pooled, _ = pooling(texts, *pooling.keys_values(frames))
        expected = torch.stack([torch.stack([xpool_pooling_written_out(pooling, text, video) for video in frames])
                                for text in texts])
    assert pooled.shape == (3, 2, 16)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backbone", ["towers", "clip"])
def test_logit_scale_gets_its_gradient_just_above_ln_100(backbone, clip_folder):  # noqa: F811
    model = xpool_on(backbone, clip_folder).train()
    parameter = model.clip.logit_scale if backbone == "clip" else model.logit_scale
    with torch.no_grad():
        parameter.fill_(LN_100 + 1e-3)
    if backbone == "clip":
        generator = torch.Generator().manual_seed(0)
        inputs = dict(input_ids=torch.randint(2, 60, (4, 6), generator=generator),
                      pixel_values_videos=torch.randn(4, 3, 3, 32, 32, generator=generator),
                      video_ids=torch.tensor([0, 0, 1, 2]))
    else:
        inputs = tiny_inputs(model.config)
    loss = model(**inputs, return_loss=True).loss
    loss.backward()
    assert parameter.grad is not None and parameter.grad.abs().item() > 0
    # The forward pass used exp(ln 100) = 100: the parameter was clamped in place, as X-Pool's post-step clamp.
    assert parameter.item() == pytest.approx(LN_100, abs=1e-6)
    assert float(model.logit_scale_value.detach()) == pytest.approx(100.0, rel=1e-5)


def test_logit_scale_outside_training_is_read_through_a_clamp():
    model = tiny_xpool().eval()
    with torch.no_grad():
        model.logit_scale.fill_(LN_100 + 0.5)
    assert float(model.logit_scale_value.detach()) == pytest.approx(100.0, rel=1e-5)
    assert model.logit_scale.item() == pytest.approx(LN_100 + 0.5)  # evaluation leaves the weights alone


@pytest.mark.parametrize("height,width", [(40, 56), (72, 36)])
def test_clip_backbone_frames_match_clips_own_processor(height, width, clip_folder):  # noqa: F811
    _, processor = load_model_and_processor(ModelArguments(clip_model_name_or_path=str(clip_folder), num_frames=2,
                                                           max_length=24), pretraining=False)
    clip_processor = CLIPImageProcessor.from_pretrained(clip_folder)
    frames = np.random.default_rng(height).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    ours = processor.video_processor(frames)["pixel_values_videos"][0]
    expected = torch.stack([clip_processor(images=frame, return_tensors="pt")["pixel_values"][0] for frame in frames])
    assert ours.shape == expected.shape == (2, 3, 32, 32)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    # A square resize (the former preprocessing) squashes the frame: visibly different pixels.
    squashing = T2V2TVideoProcessor.from_image_processor(clip_processor, num_frames=2, size={"height": 32, "width": 32})
    square = squashing(frames)["pixel_values_videos"][0]
    assert (square - expected).abs().max() > 0.1


def test_default_clip_processor_geometry_is_taken_at_full_size():
    clip_processor = CLIPImageProcessor()  # openai/clip-vit-base-patch32's: shortest edge 224, crop 224
    video_processor = T2V2TVideoProcessor.from_image_processor(clip_processor, geometry=True, num_frames=2)
    assert video_processor.output_size == (224, 224) and video_processor.do_center_crop
    frames = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    ours = video_processor(frames)["pixel_values_videos"][0]
    expected = torch.stack([clip_processor(images=frame, return_tensors="pt")["pixel_values"][0] for frame in frames])
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
