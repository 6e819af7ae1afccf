"""`fusion_frame_embedding` and `fusion_patch_embedding`: a learned per-frame time marker and a per-position place
marker on the video tokens the joint encoder reads, and nothing else (the VTC video embedding, the video tower and the
default model are unchanged)."""

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import T2V2TConfig, T2V2TModel
from modeling_t2v2t.modeling_video_encoder import frame_table_rows


def _model(**overrides):
    torch.manual_seed(0)
    return T2V2TModel(tiny_config(fusion_frame_embedding=True, fusion_frame_embedding_init_std=0.5,
                                  **overrides)).eval()


def test_off_by_default():
    assert T2V2TConfig().fusion_frame_embedding is False and T2V2TConfig().fusion_patch_embedding is False
    model = T2V2TModel(tiny_config())
    assert model.fusion_frame_embeddings is None and model.fusion_patch_embeddings is None


def test_each_frame_token_moves_by_its_frame_row_and_the_search_embedding_does_not():
    model = _model()
    pixels = tiny_inputs(model.config)["pixel_values_videos"]  # (4, 3 frames, ...)
    table = model.fusion_frame_embeddings.detach().clone()  # (1, 3, 1, D), std 0.5
    assert table.shape == (1, 3, 1, 32) and 0.3 < table.std() < 0.7
    with torch.no_grad():
        marked = model.encode_video(pixels)
        model.fusion_frame_embeddings.zero_()
        plain = model.encode_video(pixels)
    tokens_per_frame = marked.video_tokens.shape[1] // 3
    difference = (marked.video_tokens - plain.video_tokens).unflatten(1, (3, tokens_per_frame))  # (B, T, L, D)
    # Every token of frame t, in every video, moved by row t of the table.
    torch.testing.assert_close(difference, table.expand_as(difference), rtol=0, atol=1e-6)
    torch.testing.assert_close(marked.video_embeds, plain.video_embeds, rtol=0, atol=0)


def _swap_time_rows(model):
    """Rows 0 and 2 swapped: the clip's frames in another order meet other time markers."""
    model.fusion_frame_embeddings.copy_(model.fusion_frame_embeddings[:, [2, 1, 0]])


def _swap_place_rows(model):
    """The place rows of two patches swapped: the same tokens now sit at other places."""
    model.fusion_patch_embeddings.copy_(model.fusion_patch_embeddings[:, :, [0, 2, 1] + list(range(3, 17))])


@pytest.mark.parametrize("marker,swap", [("fusion_frame_embedding", _swap_time_rows),
                                         ("fusion_patch_embedding", _swap_place_rows)])
def test_match_scores_depend_on_the_marker_and_the_joint_cache_sees_it(marker, swap):
    torch.manual_seed(0)
    model = T2V2TModel(tiny_config(**{marker: True, f"{marker}_init_std": 0.5}, rerank_score="vtm",
                                   t2v_layer_scale_init_value=0.5)).eval()
    with torch.no_grad():  # move every weight off its init so the fusion's terms count (as test_fast_rerank does)
        generator = torch.Generator().manual_seed(1)
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    inputs = tiny_inputs(model.config)
    ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"]
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        videos = model.encode_video(pixels, joint_cache=True)
        index = torch.arange(4)
        cached = model.score_pairs(text_encoding=text, video_encoding=videos, video_index=index)
        reference = model.score_pairs(text_encoding=text, video_encoding=videos, video_index=index,
                                      use_joint_cache=False)
        swap(model)
        swapped = model.score_pairs(ids, mask, pixels).vtm_logits
    torch.testing.assert_close(cached.vtm_logits, reference.vtm_logits, rtol=1e-4, atol=1e-5)
    assert (swapped - reference.vtm_logits).abs().max() > 1e-4


def test_longer_clips_interpolate_the_table_as_the_temporal_embedding_does():
    table = torch.tensor([0.0, 3.0, 6.0]).view(1, 3, 1, 1)
    assert frame_table_rows(table, 2).flatten().tolist() == [0.0, 3.0]
    # 3 rows -> 6: linear interpolation with align_corners=False (sample points at (i + 0.5) / 2 - 0.5).
    assert frame_table_rows(table, 6).flatten().tolist() == pytest.approx([0.0, 0.75, 2.25, 3.75, 5.25, 6.0])
    model = _model()
    pixels = tiny_inputs(model.config, frames=6)["pixel_values_videos"]
    with torch.no_grad():
        assert model.encode_video(pixels).video_tokens.shape[1] == 6 * (1 + (32 // 8) ** 2)


def test_both_markers_are_saved_and_loaded_with_the_model(tmp_path):
    model = _model(fusion_patch_embedding=True, fusion_patch_embedding_init_std=0.5)
    model.save_pretrained(tmp_path)
    loaded = T2V2TModel.from_pretrained(tmp_path)
    assert loaded.config.fusion_frame_embedding is True and loaded.config.fusion_patch_embedding is True
    torch.testing.assert_close(loaded.fusion_frame_embeddings, model.fusion_frame_embeddings, rtol=0, atol=0)
    torch.testing.assert_close(loaded.fusion_patch_embeddings, model.fusion_patch_embeddings, rtol=0, atol=0)


def _place_marked_model(**overrides):
    torch.manual_seed(0)
    return T2V2TModel(tiny_config(fusion_patch_embedding=True, fusion_patch_embedding_init_std=0.5,
                                  **overrides)).eval()


def test_each_token_moves_by_its_place_row_in_every_frame():
    model = _place_marked_model(fusion_frame_embedding=True, fusion_frame_embedding_init_std=0.5)
    pixels = tiny_inputs(model.config)["pixel_values_videos"]  # (4, 3 frames, 3, 32, 32), 8 px patches
    places = model.fusion_patch_embeddings.detach().clone()  # (1, 1, 17, D): [CLS] + 4x4 patches
    frames = model.fusion_frame_embeddings.detach().clone()  # (1, 3, 1, D)
    assert places.shape == (1, 1, 17, 32) and 0.3 < places.std() < 0.7
    with torch.no_grad():
        marked = model.encode_video(pixels)
        model.fusion_patch_embeddings.zero_()
        model.fusion_frame_embeddings.zero_()
        plain = model.encode_video(pixels)
    difference = (marked.video_tokens - plain.video_tokens).unflatten(1, (3, 17))  # (B, T, L, D)
    # Token l of frame t moved by place row l plus time row t: the two markers add.
    torch.testing.assert_close(difference, (places + frames).expand_as(difference), rtol=0, atol=1e-6)
    torch.testing.assert_close(marked.video_embeds, plain.video_embeds, rtol=0, atol=0)


@pytest.mark.parametrize("overrides,message", [
    (dict(fusion_mode="none", fusion_frame_embedding=True), "needs a joint encoder"),
    (dict(fusion_mode="none", fusion_patch_embedding=True), "fusion_patch_embedding=True is invalid: needs a joint encoder"),
    (dict(fusion_patch_embedding=1), "must be True or False"),
    (dict(fusion_patch_embedding=True, fusion_patch_embedding_init_std=-1.0), "fusion_patch_embedding_init_std"),
    (dict(fusion_frame_embedding="yes"), "must be True or False"),
    (dict(fusion_frame_embedding=True, fusion_frame_embedding_init_std=-0.1), "fusion_frame_embedding_init_std"),
])
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)
