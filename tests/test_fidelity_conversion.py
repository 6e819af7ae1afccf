"""Converting a VindLU checkpoint starts where VindLU starts (github.com/klauscc/VindLU, models/utils.py and
models/backbones/beit/builder.py): new temporal rows are zero, BEiT's relative position tables are resized by the
geometric-progression cubic rule, a `v2t` model scores pairs with the match logit, and `conversion_report.json`
names every resize and its rule."""

import json

import numpy as np
import pytest
import torch
from test_convert_vindlu import TOKEN_IDS, randomised, save_checkpoint, vindlu_state_dict
from tiny_models import tiny_config, tiny_inputs, tiny_tokenizer

from modeling_t2v2t import T2V2TForPreTraining, T2V2TModel
from modeling_t2v2t.conversion.vindlu import (
    RESIZE_RULES,
    convert_vindlu_checkpoint,
    geometric_progression_offsets,
    resize_relative_position_bias_table,
    resize_temporal_embedding,
)
from training import convert_vindlu_checkpoint as convert_script


# ----- an independent, straightforward implementation of BEiT's rule -------------------------------------------
def reference_ratio(half: int, target_half: int) -> float:
    """BEiT's ratio q, defined by its bisection: the midpoint of [1.01, 1.5] narrowed to 1e-6 around the point
    where 1 + q + ... + q^(half-1) crosses target_half. (The bisection's last midpoint is the rule: the exact root
    moves the outer offsets of a 27 -> 31 grid by ~1e-4.)"""
    low, high = 1.01, 1.5
    while True:
        middle = (low + high) / 2
        total = sum(middle ** i for i in range(half))
        low, high = (low, middle) if total > target_half else (middle, high)
        if high - low <= 1e-6:
            return middle


def reference_spline(x: np.ndarray, y: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Not-a-knot cubic spline through (x, y), built as one linear system for the 4 coefficients of every piece:
    values at both ends of each piece, equal first and second derivatives at interior knots, equal third
    derivatives at x[1] and x[-2]. Queries outside [x[0], x[-1]] take the end values (interp2d's extrapolation)."""
    pieces = len(x) - 1
    system, rhs = np.zeros((4 * pieces, 4 * pieces)), np.zeros(4 * pieces)
    row = 0

    def powers(t, derivative):  # d^k/dt^k of [1, t, t^2, t^3] at local coordinate t
        return [np.array([1, t, t * t, t ** 3]), np.array([0, 1, 2 * t, 3 * t * t]),
                np.array([0, 0, 2, 6 * t]), np.array([0, 0, 0, 6])][derivative]

    for i in range(pieces):
        width = x[i + 1] - x[i]
        system[row, 4 * i:4 * i + 4], rhs[row] = powers(0.0, 0), y[i]
        system[row + 1, 4 * i:4 * i + 4], rhs[row + 1] = powers(width, 0), y[i + 1]
        row += 2
    for i in range(pieces - 1):
        width = x[i + 1] - x[i]
        for derivative in (1, 2):
            system[row, 4 * i:4 * i + 4] = powers(width, derivative)
            system[row, 4 * i + 4:4 * i + 8] = -powers(0.0, derivative)
            row += 1
    for i in (0, pieces - 2):
        system[row, 4 * i:4 * i + 4] = powers(0.0, 3)
        system[row, 4 * i + 4:4 * i + 8] = -powers(0.0, 3)
        row += 1
    coefficients = np.linalg.solve(system, rhs).reshape(pieces, 4)
    queries = np.clip(queries, x[0], x[-1])
    out = []
    for q in queries:
        i = min(max(np.searchsorted(x, q, side="right") - 1, 0), pieces - 1)
        out.append(coefficients[i] @ powers(q - x[i], 0))
    return np.array(out)


def reference_resize(table: np.ndarray, new_side: int) -> np.ndarray:
    old_grid = int(round((table.shape[0] - 3) ** 0.5))
    new_grid = 2 * new_side - 1
    half, target_half = old_grid // 2, new_grid // 2
    ratio = reference_ratio(half, target_half)
    distances = np.cumsum([ratio ** i for i in range(half)])  # 1, 1 + q, 1 + q + q^2, ...
    x = np.concatenate([-distances[::-1], [0.0], distances])
    targets = np.arange(-target_half, target_half + 1, dtype=float)
    columns = []
    for head in range(table.shape[1]):
        grid = table[:-3, head].reshape(old_grid, old_grid)
        along_rows = np.stack([reference_spline(x, grid[i], targets) for i in range(old_grid)])  # (old, new)
        both = np.stack([reference_spline(x, along_rows[:, j], targets) for j in range(new_grid)], axis=1)
        columns.append(both.reshape(-1))
    return np.concatenate([np.stack(columns, axis=1), table[-3:]])


@pytest.mark.parametrize("old_side,new_side", [(5, 7), (4, 6), (7, 5), (14, 16)])
def test_relative_position_table_follows_beits_geometric_progression_cubic_rule(old_side, new_side):
    generator = torch.Generator().manual_seed(old_side)
    table = torch.randn((2 * old_side - 1) ** 2 + 3, 2, generator=generator, dtype=torch.float64)
    ours = resize_relative_position_bias_table(table, new_side)
    expected = reference_resize(table.numpy(), new_side)
    assert ours.shape == ((2 * new_side - 1) ** 2 + 3, 2)
    assert np.abs(ours.numpy() - expected).max() <= 1e-4
    assert torch.equal(ours[-3:], table[-3:])  # the [CLS] entries are not on the grid
    # Offset (0, 0) sits on a source knot: its bias is kept exactly.
    centre_old, centre_new = (2 * old_side - 1) ** 2 // 2, (2 * new_side - 1) ** 2 // 2
    torch.testing.assert_close(ours[centre_new], table[centre_old], rtol=0, atol=1e-9)


def test_geometric_progression_offsets_by_hand():
    # 9 -> 13 offsets: 1 + q + q^2 + q^3 = 6 gives q = 1.2785...; the sources are +-(1, 1+q, 1+q+q^2, ...).
    source, target = geometric_progression_offsets(9, 13)
    q = source[6] - source[5]
    assert abs(1 + q + q * q + q ** 3 - 6) < 1e-4
    assert source[4] == 0.0 and source[5] == 1.0 and source[:4] == [-s for s in reversed(source[5:])]
    assert target == [float(i) for i in range(-6, 7)]


def test_temporal_table_keeps_its_rows_and_pads_with_zeros():
    table = torch.arange(1.0, 4.0).view(1, 3, 1, 1).expand(1, 3, 1, 2)  # rows 1, 2, 3
    grown = resize_temporal_embedding(table, 5)
    assert grown[0, :, 0, 0].tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]
    assert resize_temporal_embedding(table, 2)[0, :, 0, 0].tolist() == [1.0, 2.0]


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return randomised(T2V2TForPreTraining(tiny_config(bypass_mode="self")))


def test_more_frames_start_where_vindlu_starts_and_the_report_names_each_rule(source, tmp_path):
    path = save_checkpoint(tmp_path / "c.pth", vindlu_state_dict(source))
    tiny_tokenizer(tmp_path / "tok").save_pretrained(tmp_path / "tok")
    out = tmp_path / "converted"
    conversion = convert_script.main([str(path), str(out), "--num-frames", "5", "--image-size", "48",
                                      "--config", str(_write(tmp_path / "o.json", TOKEN_IDS)),
                                      "--tokenizer", str(tmp_path / "tok")])
    model = conversion.model.t2v2t
    table = model.vision_model.embeddings.temporal_position_embeddings
    old = source.t2v2t.vision_model.embeddings.temporal_position_embeddings
    assert torch.equal(table[:, :3], old) and not table[:, 3:].any()  # two new zero rows

    report = json.loads((out / "conversion_report.json").read_text())
    resized = report["resized_keys"]
    temporal = resized["vision_model.embeddings.temporal_position_embeddings"]
    assert temporal == {"checkpoint": [1, 3, 1, 32], "converted": [1, 5, 1, 32],
                        "rule": RESIZE_RULES["temporal_position_embeddings"]}
    bias_keys = [key for key in resized if key.endswith("relative_position_bias_table")]
    assert len(bias_keys) == source.config.vision_config.num_hidden_layers
    assert all(resized[key]["rule"].startswith("beit_geometric_progression_cubic") for key in bias_keys)
    assert resized[bias_keys[0]]["checkpoint"] == [7 * 7 + 3, 4] and resized[bias_keys[0]]["converted"] == [124, 4]


def _write(path, value):
    path.write_text(json.dumps(value))
    return path


def test_converted_v2t_model_scores_pairs_with_vindlus_match_logit(source, tmp_path):
    state = vindlu_state_dict(source, text_prefix="text_encoder.", mlm=False)
    conversion = convert_vindlu_checkpoint(save_checkpoint(tmp_path / "ft.pth", state),
                                           config_overrides={"fusion_mode": "v2t", **TOKEN_IDS})
    model = conversion.model
    assert isinstance(model, T2V2TModel) and model.config.rerank_score == "vtm"
    inputs = tiny_inputs(source.config)
    with torch.no_grad():
        scores = model.score_pairs(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"])
    # VindLU's retrieval evaluation ranks candidates by itm_head(...)[:, 1].
    assert torch.equal(scores.scores, scores.vtm_logits[:, 1])
    # Asked for explicitly, another rerank score is kept; a T2V2T conversion keeps the config default.
    kept = convert_vindlu_checkpoint(save_checkpoint(tmp_path / "ft2.pth", state),
                                     config_overrides={"fusion_mode": "v2t", "rerank_score": "vtm+vtc", **TOKEN_IDS})
    assert kept.model.config.rerank_score == "vtm+vtc"
    t2v2t = convert_vindlu_checkpoint(save_checkpoint(tmp_path / "ft3.pth", state), config_overrides=TOKEN_IDS)
    assert t2v2t.model.config.rerank_score == "vtm+vtc"
