"""Attention building blocks shared by the T2V2T towers and fusion: stochastic depth, multi-head attention on
top of `scaled_dot_product_attention`, and the text→video Bypass cross-attention.
"""

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `drop_prob` while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        keep = torch.floor(keep_prob + torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device))
        return hidden_states / keep_prob * keep

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def padding_mask_to_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, N) 1/0 key mask -> (B, 1, 1, N) additive bias, as BERT's extended attention mask."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def split_heads(states: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, length, width = states.shape
    return states.view(batch, length, num_heads, width // num_heads).transpose(1, 2)  # (B, H, N, d)


def merge_heads(states: torch.Tensor) -> torch.Tensor:
    batch, num_heads, length, head_dim = states.shape
    return states.transpose(1, 2).reshape(batch, length, num_heads * head_dim)


def attend(query, key, value, num_heads: int, bias: torch.Tensor | None, dropout: float) -> torch.Tensor:
    """Multi-head scaled dot-product attention on (B, N, D) projections; `bias` is added to the logits."""
    out = F.scaled_dot_product_attention(
        split_heads(query, num_heads), split_heads(key, num_heads), split_heads(value, num_heads),
        attn_mask=bias, dropout_p=dropout,
    )
    return merge_heads(out)


class BypassCrossAttention(nn.Module):
    r"""
    Cross-attention with video tokens as queries and text tokens as keys/values, with an optional *bypass* slot.

    Plain softmax cross-attention makes every video patch take a convex mix of word values, although most patches
    match no word. The bypass adds one more slot to each query's softmax whose value is "no change":

    - `bypass="self"`: the query token itself is the extra key/value. Its key is projected from the token
      (`bypass_k_proj`); its value is the token itself, which, in the residual form `x + update`, is a zero update.
      A patch unrelated to every word can attend to itself and pass through unchanged.
    - `bypass="null"`: a learnable null key per head, whose value (per head, zero at init) is learnable too.
    - `bypass=None`: plain cross-attention (the "naive T2V2T" ablation).

    The output projection has no bias so that a fully bypassed token gets an exactly zero update.
    This is our reading of the T2V2T abstract (the paper's equations are not public).
    """

    def __init__(self, query_dim: int, context_dim: int, num_heads: int, bypass: str | None, dropout: float = 0.0):
        super().__init__()
        if bypass not in (None, "self", "null"):
            raise ValueError(f"bypass={bypass!r} is invalid: must be None, 'self' or 'null'.")
        self.num_heads = num_heads
        self.head_dim = query_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.bypass = bypass
        self.dropout = nn.Dropout(dropout)
        self.q_proj = nn.Linear(query_dim, query_dim)
        self.k_proj = nn.Linear(context_dim, query_dim)
        self.v_proj = nn.Linear(context_dim, query_dim)
        self.o_proj = nn.Linear(query_dim, query_dim, bias=False)
        if bypass == "self":
            self.bypass_k_proj = nn.Linear(query_dim, query_dim)
        elif bypass == "null":
            self.null_key = nn.Parameter(torch.zeros(num_heads, self.head_dim))
            self.null_value = nn.Parameter(torch.zeros(num_heads, self.head_dim))

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        context_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """
        Args:
            queries: (B, Q, Dq) normalised video tokens. context: (B, N, Dc) text states.
            context_mask: (B, N) 1 for real words, 0 for padding.
            output_attentions: also return each query's attention over the words (for visualisation).
            context_index (`(B,)`, *optional*): then `context` and `context_mask` hold each distinct caption once
                (C, N, ...) and query row i attends to caption `context_index[i]`: the keys and values are projected
                once per caption (VTM pairs reuse each caption up to three times).
        Returns:
            update (B, Q, Dq) to add to the video tokens, and the bypass probability per head (B, H, Q)
            (`None` without bypass); with `output_attentions`, a third item: the probability each query gives
            each word (B, H, Q, N), before dropout (with the bypass, words plus bypass sum to 1).
        """
        q = split_heads(self.q_proj(queries), self.num_heads)  # (B, H, Q, d)
        k = split_heads(self.k_proj(context), self.num_heads)  # (B, H, N, d)
        v = split_heads(self.v_proj(context), self.num_heads)
        if context_index is not None:
            k, v = k[context_index], v[context_index]
            context_mask = None if context_mask is None else context_mask[context_index]
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # (B, H, Q, N)
        if context_mask is not None:
            logits = logits + padding_mask_to_bias(context_mask, logits.dtype)

        if self.bypass is None:
            word_probs = logits.softmax(dim=-1)
            update = self.o_proj(merge_heads(torch.matmul(self.dropout(word_probs), v)))
            return (update, None, word_probs) if output_attentions else (update, None)

        if self.bypass == "self":
            bypass_key = split_heads(self.bypass_k_proj(queries), self.num_heads)  # one key per query
            bypass_logit = (q * bypass_key).sum(-1, keepdim=True) * self.scale  # (B, H, Q, 1)
        else:
            bypass_logit = torch.einsum("bhqd,hd->bhq", q, self.null_key)[..., None] * self.scale
        probs = torch.cat([bypass_logit, logits], dim=-1).softmax(dim=-1)
        bypass_prob, word_probs = probs[..., 0], probs[..., 1:]
        probs = self.dropout(probs)
        message = torch.matmul(probs[..., 1:], v)  # (B, H, Q, d); the "self" slot adds nothing (zero update)
        if self.bypass == "null":
            message = message + probs[..., :1] * self.null_value[None, :, None, :]
        update = self.o_proj(merge_heads(message))
        return (update, bypass_prob, word_probs) if output_attentions else (update, bypass_prob)

    # ----- cached path (reranking): the video-only half of the attention, computed once per video -------------
    def video_queries(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        What depends on the (normalised) video tokens alone: the projected queries (B, Q, Dq) and the bypass slot's
        logit per head (B, H, Q), already scaled (`None` without bypass). Both are reused for every caption.
        """
        q = self.q_proj(queries)
        if self.bypass is None:
            return q, None
        heads = split_heads(q, self.num_heads)
        if self.bypass == "self":
            bypass_logit = (heads * split_heads(self.bypass_k_proj(queries), self.num_heads)).sum(-1)
        else:
            bypass_logit = torch.einsum("bhqd,hd->bhq", heads, self.null_key)
        return q, bypass_logit * self.scale

    def mixture(
        self, video_queries: torch.Tensor, bypass_logit: torch.Tensor | None, context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        The caption-dependent half, for ONE video against T captions, without the output projection: the update
        `forward` would return is `o_proj(merge_heads(probs @ values))`, i.e. a mixture of the returned per-slot
        value vectors. Returning the factors instead of the (Q, Dq) update lets the fusion layers apply their
        key/value projections to the few slots rather than to every video token.

        Args:
            video_queries: (Q, Dq) and bypass_logit: (H, Q) from `video_queries` (one video), or (T, Q, Dq) and
                (T, H, Q): one video per caption.
            context: (T, N, Dc) caption states; context_mask: (T, N).
        Returns:
            probs (T, H, Q, S) and values (T, H, S, d) over the S slots that move a token (the words, plus the null
            slot first with `bypass="null"`; the "self" slot changes nothing and is left out), and the bypass
            probability (T, H, Q) (`None` without bypass).
        """
        captions, length = context.shape[:2]
        # Scaled keys rather than scaled logits: N numbers per query instead of Q.
        k = split_heads(self.k_proj(context), self.num_heads) * self.scale  # (T, H, N, d)
        v = split_heads(self.v_proj(context), self.num_heads)
        if video_queries.dim() == 3:  # one video per caption
            logits = torch.matmul(split_heads(video_queries, self.num_heads), k.transpose(-1, -2))
        else:  # one (H, Q, d) @ (H, d, T*N) product: the video's queries are shared by all captions
            q = split_heads(video_queries[None], self.num_heads)[0]  # (H, Q, d)
            logits = torch.matmul(q, k.permute(1, 3, 0, 2).reshape(self.num_heads, self.head_dim, captions * length))
            logits = logits.view(self.num_heads, -1, captions, length).permute(2, 0, 1, 3)
        # logits: (T, H, Q, N)
        if context_mask is not None:
            logits = logits + padding_mask_to_bias(context_mask, logits.dtype)
        if self.bypass is None:
            return logits.softmax(dim=-1), v, None
        slot = (bypass_logit if bypass_logit.dim() == 3 else bypass_logit[None]).unsqueeze(-1).expand(
            captions, -1, -1, 1)
        probs = torch.cat([slot, logits], dim=-1).softmax(dim=-1)
        bypass_prob = probs[..., 0]
        if self.bypass == "self":
            return probs[..., 1:], v, bypass_prob
        null_value = self.null_value[None, :, None, :].expand(captions, -1, 1, -1)
        return probs, torch.cat([null_value, v], dim=2), bypass_prob


__all__ = ["DropPath", "BypassCrossAttention", "attend", "padding_mask_to_bias", "split_heads", "merge_heads"]
