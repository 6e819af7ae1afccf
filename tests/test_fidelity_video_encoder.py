"""The video encoder computes VindLU's function at every frame count (github.com/klauscc/VindLU,
models/backbones/beit/st_beit.py and models/modules/temporal_model.py):

- temporal position embedding: the first T rows when T <= the table's size, linear interpolation above it;
- temporal attention: the identity on a 1-frame clip, `x + scale * MHA_time(LN(x))` otherwise.

Module-level tests use hand-checkable tensors; the model-level tests compare with a 1-frame image model
(transformers' BeitModel) and with a reference forward written the way VindLU writes it."""

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config, tiny_tokenizer
from transformers import BeitConfig, BeitModel, BertConfig, BertModel

from modeling_t2v2t import T2V2TModel
from modeling_t2v2t.configuration_t2v2t import T2V2TVisionConfig
from modeling_t2v2t.modeling_video_encoder import T2V2TVisionEmbeddings, T2V2TVisionTransformer, TemporalAttention

TOLERANCE = dict(rtol=0, atol=1e-5)


def vision_config(**overrides) -> T2V2TVisionConfig:
    return tiny_config(vision_config=overrides).vision_config


def counting_table(embeddings: T2V2TVisionEmbeddings) -> torch.Tensor:
    """Row t of the temporal table holds the value t in every channel."""
    table = embeddings.temporal_position_embeddings
    with torch.no_grad():
        table.copy_(torch.arange(table.shape[1], dtype=table.dtype)[None, :, None, None].expand_as(table))
    return table


def test_temporal_embedding_takes_the_first_rows_up_to_the_table_size():
    embeddings = T2V2TVisionEmbeddings(vision_config(num_frames=4))
    counting_table(embeddings)
    for frames in (1, 2, 3, 4):
        rows = embeddings.temporal_embedding(frames)
        assert rows.shape == (1, frames, 1, 32)
        assert rows[0, :, 0, 0].tolist() == list(range(frames))  # rows 0..T-1 unchanged, not a stretched table


def test_temporal_embedding_interpolates_only_above_the_table_size():
    embeddings = T2V2TVisionEmbeddings(vision_config(num_frames=4))
    counting_table(embeddings)
    # Linear, half-pixel centres (F.interpolate's align_corners=False, as VindLU's interpolate_temporal_pos_embed):
    # output t samples source position (t + 0.5) * 4 / 8 - 0.5, clamped to [0, 3].
    rows = embeddings.temporal_embedding(8)[0, :, 0, 0]
    assert rows.tolist() == [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]
    # Five frames from four rows: source positions 0.3, 1.1, 1.9, 2.7 (and -0.1 clamped to 0).
    torch.testing.assert_close(embeddings.temporal_embedding(5)[0, :, 0, 0],
                               torch.tensor([0.0, 0.7, 1.5, 2.3, 3.0]), rtol=0, atol=1e-6)


def test_temporal_attention_is_the_identity_on_one_frame():
    config = vision_config()
    torch.manual_seed(0)
    block = TemporalAttention(config, drop_path_rate=0.0).eval()
    with torch.no_grad():
        block.gate.fill_(0.5)
        for parameter in block.attention.parameters():
            parameter.normal_()
    one_frame = torch.randn(2, 1, 5, 32)
    assert torch.equal(block(one_frame), one_frame)
    # The same block does change two frames: the identity above is the T = 1 rule, not a dead block.
    two_frames = torch.randn(2, 2, 5, 32)
    assert (block(two_frames) - two_frames).abs().max() > 0.1


def randomise(model, scale=0.2):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def test_one_frame_clip_equals_the_image_model_with_open_temporal_gates(tmp_path):
    image = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=48)
    beit = randomise(BeitModel(BeitConfig(**image, use_relative_position_bias=True, use_mean_pooling=True,
                                          layer_scale_init_value=0.1)))
    beit.save_pretrained(tmp_path / "beit")
    bert = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=48, max_position_embeddings=64))
    bert.save_pretrained(tmp_path / "bert")
    tiny_tokenizer(tmp_path / "bert").save_pretrained(tmp_path / "bert")
    model = T2V2TModel.from_vision_text_pretrained(str(tmp_path / "beit"), str(tmp_path / "bert"),
                                                   vision_config_overrides={"num_frames": 4}, fusion_layer=1).eval()
    encoder = model.vision_model
    with torch.no_grad():
        for layer in encoder.layers:
            layer.temporal_attention.gate.fill_(0.5)
            for parameter in layer.temporal_attention.attention.parameters():
                parameter.normal_(std=0.2)
    assert not encoder.embeddings.temporal_position_embeddings.any()  # zero rows: an image model's start point

    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = beit(pixels)
        one_frame = encoder(pixels[:, None])
        two_frames = encoder(torch.stack([pixels, pixels.flip(0)], dim=1))
    torch.testing.assert_close(one_frame.last_hidden_state[:, 0], expected.last_hidden_state, **TOLERANCE)
    torch.testing.assert_close(one_frame.pooler_output[:, 0], expected.pooler_output, **TOLERANCE)
    # With the gates open, two frames do mix: the 1-frame equality is not the gates being shut.
    assert (two_frames.last_hidden_state[:, 0] - expected.last_hidden_state).abs().max() > 1e-2


def vindlu_style_forward(encoder: T2V2TVisionTransformer, pixels: torch.Tensor) -> torch.Tensor:
    """Frame features computed as VindLU writes its forward: temporal table sliced or interpolated
    (`interpolate_temporal_pos_embed`), spatial block per frame, then `nn.MultiheadAttention` over time with a
    `T == 1` early return. The spatial block is our layer with its temporal module removed (tested against
    transformers' BEiT in test_towers.py)."""
    batch, frames = pixels.shape[:2]
    embeddings = encoder.embeddings
    patches = embeddings.patch_embeddings(pixels.flatten(0, 1))
    x = torch.cat([embeddings.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
    x = x.view(batch, frames, *x.shape[1:])
    table = embeddings.temporal_position_embeddings
    if frames <= table.shape[1]:
        x = x + table[:, :frames]
    else:
        old = table.squeeze(2).permute(0, 2, 1)  # (1, D, T_old)
        x = x + F.interpolate(old, frames, mode="linear").permute(0, 2, 1).unsqueeze(2)
    width = x.shape[-1]
    for layer in encoder.layers:
        temporal, layer.temporal_attention = layer.temporal_attention, None
        try:
            x = layer(x)
        finally:
            layer.temporal_attention = temporal
        if frames == 1:
            continue
        mha = torch.nn.MultiheadAttention(width, encoder.config.num_attention_heads).eval()
        attention = temporal.attention
        mha.load_state_dict({
            "in_proj_weight": torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]),
            "in_proj_bias": torch.cat([attention.q_proj.bias, torch.zeros(width), attention.v_proj.bias]),
            "out_proj.weight": attention.o_proj.weight, "out_proj.bias": attention.o_proj.bias})
        length = x.shape[2]
        over_time = temporal.norm(x).permute(1, 0, 2, 3).reshape(frames, batch * length, width)
        update = mha(over_time, over_time, over_time)[0].reshape(frames, batch, length, width).permute(1, 0, 2, 3)
        x = x + temporal.gate * update
    return encoder.pooler(x)


@pytest.mark.parametrize("frames", range(1, 9))  # 1 .. twice the 4-row table
def test_encoder_matches_vindlus_forward_at_every_frame_count(frames):
    torch.manual_seed(0)
    encoder = randomise(T2V2TVisionTransformer(vision_config(num_frames=4, qkv_bias=True, key_bias=False)))
    with torch.no_grad():
        for layer in encoder.layers:
            layer.temporal_attention.gate.fill_(0.5)
    assert encoder.embeddings.temporal_position_embeddings.abs().min() > 0  # every table row shows
    pixels = torch.randn(2, frames, 3, 32, 32)
    with torch.no_grad():
        ours = encoder(pixels).pooler_output
        reference = vindlu_style_forward(encoder, pixels)
    torch.testing.assert_close(ours, reference, **TOLERANCE)
