"""What Bypass cross-attention does, shown with hand-set weights.

Words live in the first four dimensions of an 8-d space, a patch that matches no word in the last four. With
identity projections, a patch's logit for a word is their dot product, and the bypass key is built to respond
only to the "no word" subspace. Then:
- a patch unrelated to every word takes the bypass and passes through unchanged;
- without the bypass (naive T2V2T) softmax forces that same patch to absorb the mean of the word values;
- a patch that matches a word still takes that word, with or without the bypass.
"""

import pytest
import torch

from modeling_t2v2t.attention_t2v2t import BypassCrossAttention

DIM = 8
WORD_SPACE = torch.diag(torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
OFF_WORD_SPACE = torch.eye(DIM) - WORD_SPACE


def hand_set_attention(bypass):
    attention = BypassCrossAttention(DIM, DIM, num_heads=1, bypass=bypass)
    with torch.no_grad():
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj):
            projection.weight.copy_(torch.eye(DIM))
            if projection.bias is not None:
                projection.bias.zero_()
        if bypass == "self":
            # The bypass key sees only the part of the patch outside the word space.
            attention.bypass_k_proj.weight.copy_(OFF_WORD_SPACE)
            attention.bypass_k_proj.bias.zero_()
        elif bypass == "null":
            attention.null_key.copy_(torch.tensor([[0.0, 0, 0, 0, 1, 1, 1, 1]]) * 3.0)
    return attention.eval()


def scene():
    words = torch.eye(DIM)[:3] * 3.0  # three words along axes 0, 1, 2
    unrelated = torch.tensor([0.0, 0, 0, 0, 3, 3, 3, 3])  # orthogonal to every word
    related = torch.tensor([0.0, 5.0, 0, 0, 0, 0, 0, 0])  # matches word 1
    return words[None], torch.stack([unrelated, related])[None]


@pytest.mark.parametrize("bypass", ["self", "null"])
def test_unrelated_patch_passes_through_with_bypass_and_not_without(bypass):
    words, patches = scene()
    with torch.no_grad():
        update_bypass, bypass_prob = hand_set_attention(bypass)(patches, words)
        update_naive, no_prob = hand_set_attention(None)(patches, words)

    assert no_prob is None
    # Unrelated patch: the bypass takes (nearly) all its attention, so its update is (nearly) zero ...
    assert bypass_prob[0, 0, 0] > 0.999
    assert update_bypass[0, 0].norm() < 1e-2 * patches[0, 0].norm()
    # ... while plain softmax spreads it evenly over the words: it absorbs their mean value.
    torch.testing.assert_close(update_naive[0, 0], words[0].mean(0))
    assert update_naive[0, 0].norm() > 0.25 * patches[0, 0].norm()
    assert update_naive[0, 0].norm() > 30 * update_bypass[0, 0].norm()

    # Related patch: both variants move it towards its word (word 1 gets almost all of the attention).
    assert bypass_prob[0, 0, 1] < 0.01
    for update in (update_bypass, update_naive):
        assert update[0, 1, 1] > 2.9 and update[0, 1, [0, 2]].abs().max() < 0.05


def test_padding_words_are_ignored():
    words, patches = scene()
    padded = torch.cat([words, torch.full((1, 2, DIM), 50.0)], dim=1)  # two huge padding tokens
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    attention = hand_set_attention("self")
    with torch.no_grad():
        torch.testing.assert_close(attention(patches, padded, mask)[0], attention(patches, words)[0])


def test_null_value_starts_at_zero_and_is_learnable():
    attention = BypassCrossAttention(DIM, DIM, num_heads=2, bypass="null")
    assert torch.equal(attention.null_value, torch.zeros(2, DIM // 2)) and attention.null_value.requires_grad


def test_unknown_bypass_is_rejected():
    with pytest.raises(ValueError, match="bypass='gate'"):
        BypassCrossAttention(DIM, DIM, num_heads=1, bypass="gate")
