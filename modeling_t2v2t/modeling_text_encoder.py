"""The T2V2T text encoder: BERT whose layers from `fusion_layer` on add a cross-attention to video tokens
(self-attention -> cross-attention -> FFN, as ALBEF/VindLU).

Module names mirror transformers' `BertModel` (`embeddings.word_embeddings`, `encoder.layer.N.attention.self.query`,
...) and VindLU's cross-attention (`encoder.layer.N.crossattention.self.key`), so both checkpoints map one to one.
Layers `[0, fusion_layer)` give the text-only features used by VTC; running every layer without video tokens
computes exactly `BertModel`'s function.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention_t2v2t import attend, merge_heads, padding_mask_to_bias, split_heads
from .configuration_t2v2t import T2V2TTextConfig


def pool_text_states(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The sentence feature of text states (B, N, D): the [CLS] state, or the mean over real (unpadded) tokens."""
    if pooling == "cls":
        return states[:, 0]
    if pooling == "mean":
        weights = attention_mask.to(states.dtype).unsqueeze(-1)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    raise ValueError(f"text pooling {pooling!r} is invalid: must be 'cls' or 'mean'.")


class T2V2TTextEmbeddings(nn.Module):
    def __init__(self, config: T2V2TTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.max_positions:
            raise ValueError(
                f"input_ids has {length} tokens but max_position_embeddings is {self.max_positions}; "
                "truncate the captions (the processor's max_length)."
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(length, device=input_ids.device)[None]
        embeddings = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)
        )
        return self.dropout(self.LayerNorm(embeddings))


class BertAttentionProjections(nn.Module):
    """`query`/`key`/`value` as BERT names them; keys/values may come from another modality (`kv_width`)."""

    def __init__(self, hidden_size: int, kv_width: int):
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(kv_width, hidden_size)
        self.value = nn.Linear(kv_width, hidden_size)


class BertResidualOutput(nn.Module):
    """Post-LN residual: `LayerNorm(dropout(dense(x)) + residual)`."""

    def __init__(self, in_width: int, config: T2V2TTextConfig):
        super().__init__()
        self.dense = nn.Linear(in_width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertAttentionBlock(nn.Module):
    def __init__(self, config: T2V2TTextConfig, kv_width: int):
        super().__init__()
        self.self = BertAttentionProjections(config.hidden_size, kv_width)
        self.output = BertResidualOutput(config.hidden_size, config)
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, hidden_states, context, bias, context_index=None):
        """`context_index` (B,): `context` holds each distinct context once and row i attends to context
        `context_index[i]` (its keys and values are projected once)."""
        dropout = self.dropout if self.training else 0.0
        if hidden_states.shape[1] == 1:
            return self.output(self._attend_one_row(hidden_states, context, bias, context_index, dropout),
                               hidden_states)
        key, value = self.self.key(context), self.self.value(context)
        if context_index is not None:
            key, value = key[context_index], value[context_index]
        attended = attend(self.self.query(hidden_states), key, value, self.num_heads, bias, dropout)
        return self.output(attended, hidden_states)

    def _attend_one_row(self, hidden_states, context, bias, context_index, dropout: float) -> torch.Tensor:
        """The same attention for a single query row (VTM's [CLS]-only last fusion layer, whose context is one video
        per pair), with the key and value projections moved to the query's side: `q·(W_k c + b_k) = (W_k^T q)·c +
        q·b_k` and `sum_m p_m (W_v c_m + b_v) = W_v (sum_m p_m c_m) + b_v`, per head. Projecting every context
        token to keys and values (P x M x D each) cost more than the rest of the layer; this costs P x heads x Dv.
        (P, 1, D)."""
        projections, heads = self.self, self.num_heads
        width = projections.query.out_features
        head_dim = width // heads
        if context_index is not None:
            context = context[context_index]  # (P, M, Dv): the raw tokens, narrower than their keys and values
        query = (projections.query(hidden_states[:, 0]) * head_dim**-0.5).view(-1, heads, head_dim)  # (P, H, d)
        key_weight = projections.key.weight.view(heads, head_dim, -1)  # (H, d, Dv)
        logits = torch.einsum("phd,hdv->phv", query, key_weight) @ context.transpose(1, 2)  # (P, H, M)
        # q·b_k is the same for every token of a row, so the softmax ignores it; kept so b_k stays in the graph (and
        # gets its zero gradient) exactly as on the full path.
        logits = logits + (query * projections.key.bias.view(heads, head_dim)).sum(-1, keepdim=True)
        if bias is not None:
            logits = logits + bias[:, 0]  # (B, 1, 1, M) -> (B, 1, M)
        probs = F.dropout(logits.softmax(dim=-1), dropout, training=dropout > 0)
        pooled = probs.to(context.dtype) @ context  # (P, H, Dv)
        value_weight = projections.value.weight.view(heads, head_dim, -1)
        out = torch.einsum("phv,hdv->phd", pooled, value_weight) + projections.value.bias.view(heads, head_dim)
        return out.reshape(-1, 1, width)


class BertIntermediate(nn.Module):
    def __init__(self, config: T2V2TTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class T2V2TTextLayer(GradientCheckpointingLayer):
    """BERT layer; with `video_width` set it also cross-attends to video tokens after self-attention."""

    def __init__(self, config: T2V2TTextConfig, video_width: int | None = None):
        super().__init__()
        self.attention = BertAttentionBlock(config, config.hidden_size)
        self.crossattention = BertAttentionBlock(config, video_width) if video_width is not None else None
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config.intermediate_size, config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        self_bias: torch.Tensor,
        video_states: torch.Tensor | None = None,
        cls_only: bool = False,
        text_index: torch.Tensor | None = None,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """With `cls_only`, only the [CLS] row is computed (its queries attend to every token's keys/values):
        the same [CLS] output as the full layer, for a last layer whose other rows nobody reads. (B, 1, D).
        With `text_index` (P,), `hidden_states` hold each distinct text once: the self-attention runs once per text
        and its result is repeated for the P pairs before the cross-attention; with `video_index` (P,),
        `video_states` hold each distinct video once (see `BertAttentionBlock.forward`)."""
        rows = hidden_states[:, :1] if cls_only else hidden_states
        hidden_states = self.attention(rows, hidden_states, self_bias)
        if text_index is not None:
            hidden_states = hidden_states[text_index]
        if video_states is not None:
            if self.crossattention is None:
                raise ValueError("video tokens were given to a text-only layer (below fusion_layer).")
            # every video token is real: no mask
            hidden_states = self.crossattention(hidden_states, video_states, None, context_index=video_index)
        return self.output(self.intermediate(hidden_states), hidden_states)


def _cached_cross_attention(block: BertAttentionBlock, hidden, keys, values, low_rank=None) -> torch.Tensor:
    """`block(hidden, video_states, None)` for T captions (T, n, D) and one video given by its projected keys and
    values (M, D), plus the optional low-rank change of those keys/values (see `fuse_cached`)."""
    captions, length, width = hidden.shape
    heads = block.num_heads
    head_dim = width // heads
    tokens = keys.shape[-2]
    paired = keys.dim() == 3  # (T, M, D): a video per caption; else (M, D) shared by all captions
    # Scaled queries rather than scaled logits: (n, d) numbers to scale per head instead of (n, M).
    q = split_heads(block.self.query(hidden), heads) * head_dim**-0.5  # (T, G, n, d)
    if paired:
        logits = torch.matmul(q, split_heads(keys, heads).transpose(-1, -2))  # (T, G, n, M)
    else:
        q_stacked = q.transpose(0, 1).reshape(heads, captions * length, head_dim)
        logits = torch.matmul(q_stacked, keys.view(tokens, heads, head_dim).permute(1, 2, 0))  # (G, T*n, M)
        logits = logits.view(heads, captions, length, tokens).transpose(0, 1)  # (T, G, n, M)
    if low_rank is not None:
        slot_probs, key_slots, value_slots = low_rank
        slots = slot_probs.shape[1]
        per_slot = torch.einsum("tgnd,tsgd->tgns", q, key_slots.view(captions, slots, heads, head_dim))
        logits = logits + torch.bmm(per_slot.reshape(captions, heads * length, slots), slot_probs).view(
            captions, heads, length, tokens)
    probs = logits.softmax(dim=-1)
    if paired:
        out = torch.matmul(probs, split_heads(values, heads))  # (T, G, n, d)
    else:
        out = torch.matmul(probs.transpose(0, 1).reshape(heads, captions * length, tokens),
                           values.view(tokens, heads, head_dim).transpose(0, 1))  # (G, T*n, d)
        out = out.view(heads, captions, length, head_dim).transpose(0, 1)
    if low_rank is not None:
        mixed = torch.bmm(probs.reshape(captions, heads * length, tokens), slot_probs.transpose(1, 2))
        out = out + torch.einsum("tgns,tsgd->tgnd", mixed.view(captions, heads, length, slots),
                                 value_slots.view(captions, slots, heads, head_dim))
    return block.output(merge_heads(out), hidden)


class T2V2TTextEncoderLayers(nn.Module):
    def __init__(self, config: T2V2TTextConfig, num_layers: int, fusion_layer: int, video_width: int):
        super().__init__()
        self.layer = nn.ModuleList(
            [T2V2TTextLayer(config, video_width if i >= fusion_layer else None) for i in range(num_layers)]
        )


class T2V2TTextTransformer(nn.Module):
    """
    BERT with cross-attention from `fusion_layer` on. `num_layers` may be smaller than the config's
    `num_hidden_layers` (the dual encoder builds only the text-only layers).
    """

    def __init__(self, config: T2V2TTextConfig, fusion_layer: int, video_width: int, num_layers: int | None = None):
        super().__init__()
        self.config = config
        self.fusion_layer = fusion_layer
        self.embeddings = T2V2TTextEmbeddings(config)
        num_layers = config.num_hidden_layers if num_layers is None else num_layers
        self.encoder = T2V2TTextEncoderLayers(config, num_layers, fusion_layer, video_width)

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layer)

    def run_layers(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        start: int,
        end: int,
        video_states: torch.Tensor | None = None,
        cls_only: bool = False,
        text_index: torch.Tensor | None = None,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Runs layers `[start, end)`; layers at or past `fusion_layer` cross-attend to `video_states` if given.
        `cls_only`: the last layer computes the [CLS] row alone (B, 1, D), all that a match score reads.
        `text_index` / `video_index`: see `fuse`."""
        bias = padding_mask_to_bias(attention_mask, hidden_states.dtype)
        for index in range(start, end):
            context = video_states if index >= self.fusion_layer else None
            first = index == start
            hidden_states = self.encoder.layer[index](hidden_states, bias, context, cls_only and index == end - 1,
                                                      text_index if first else None, video_index)
            if first and text_index is not None:  # from here on a row per pair
                bias = bias[text_index]
        return hidden_states

    def encode_text(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """Text-only features: embeddings then layers `[0, fusion_layer)`. (B, N, D)."""
        embeddings = self.embeddings(input_ids, token_type_ids)
        return self.run_layers(embeddings, attention_mask, 0, self.fusion_layer)

    def fuse(self, text_states, attention_mask, video_states, cls_only: bool = False, text_index=None,
             video_index=None) -> torch.Tensor:
        """Joint features: layers `[fusion_layer, num_layers)` over text states, cross-attending to video; with
        `cls_only` the last layer gives the [CLS] row alone (P, 1, D). `text_index` / `video_index` (P,): pair i
        is text `text_index[i]` and video `video_index[i]` of inputs that hold each text / video once (the first
        layer's self-attention runs per text, every layer's video keys and values per video)."""
        return self.run_layers(text_states, attention_mask, self.fusion_layer, self.num_layers, video_states,
                               cls_only, text_index, video_index)

    def video_keys_values(self, video_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fusion layers' cross-attention keys and values of video tokens (B, M, Dv): two (B, F, M, D) tensors,
        F = layers from `fusion_layer` on. They depend on the video only, so reranking computes them once."""
        layers = self.encoder.layer[self.fusion_layer:]
        keys = torch.stack([layer.crossattention.self.key(video_states) for layer in layers], dim=1)
        values = torch.stack([layer.crossattention.self.value(video_states) for layer in layers], dim=1)
        return keys, values

    def fuse_cached(
        self,
        text_states: torch.Tensor,
        attention_mask: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        slot_probs: torch.Tensor | None = None,
        key_slots: torch.Tensor | None = None,
        value_slots: torch.Tensor | None = None,
        cls_only: bool = True,
    ) -> torch.Tensor:
        """
        `fuse` for T captions against ONE video, from that video's cached keys/values. Same function as `fuse`,
        reorganised:

        - keys, values (F, M, D): `video_keys_values` of the video tokens, shared by all T captions (their queries
          are stacked into one product per head); or (T, F, M, D): a video per caption.
        - When the video tokens were first moved by a caption-conditioned update `sum_s slot_probs[t, s, j] * u_s`
          (T2V2T's text→video layer), the fusion layers' keys are `keys + slot_probs^T @ key_slots[l]` (likewise
          values), since the key/value projections are affine and nothing normalises the tokens in between.
          slot_probs: (T, S, M); key_slots, value_slots: (F, T, S, D), the slots' update vectors through each
          layer's key/value weights (no bias). The moved tokens are never formed: scores use
          `q·k_j = q·keys_j + sum_s (q·key_slots_s) slot_probs[s, j]` and outputs use `probs @ values +
          (probs @ slot_probs^T) @ value_slots`, costing S (not D) per video token.
        - cls_only: the last layer is computed for [CLS] only (all a match score reads); the others attend to it.

        Returns (T, N, D) states, or (T, 1, D) with `cls_only`.
        """
        bias = padding_mask_to_bias(attention_mask, text_states.dtype)
        hidden = text_states
        for position, index in enumerate(range(self.fusion_layer, self.num_layers)):
            layer = self.encoder.layer[index]
            rows = hidden[:, :1] if cls_only and index == self.num_layers - 1 else hidden
            rows = layer.attention(rows, hidden, bias)  # keys/values from every token, queries from `rows`
            low_rank = None if slot_probs is None else (slot_probs, key_slots[position], value_slots[position])
            rows = _cached_cross_attention(layer.crossattention, rows, keys.select(-3, position),
                                           values.select(-3, position), low_rank)
            hidden = layer.output(layer.intermediate(rows), rows)
        return hidden

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, video_states=None) -> torch.Tensor:
        """All layers; without `video_states` this is `BertModel(...).last_hidden_state`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeddings = self.embeddings(input_ids, token_type_ids)
        return self.run_layers(embeddings, attention_mask, 0, self.num_layers, video_states)


__all__ = ["T2V2TTextTransformer"]
