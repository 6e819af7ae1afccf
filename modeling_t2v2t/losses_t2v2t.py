"""The T2V2T objectives as small pure functions: VTC (multi-positive, gathered across processes), VTM hard
negative sampling, and MLM masking. Each is tested on its own.

The pieces every model type shares live here too: `prepare_video_ids` (the ids that say which captions share a
video) and `multi_positive_cross_entropy`, the symmetric contrastive loss of T2V2T (VTC), X-Pool and CRET.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F


def is_distributed() -> bool:
    """Whether more than one process runs in an initialised `torch.distributed` group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns to each process the sum over processes of the gradient w.r.t. its rows.

    Written here because `torch.distributed.nn.functional.all_gather` is deprecated and its gloo backward goes
    through all_to_all; an all_reduce of the gathered gradient is the same sum, on every backend.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_batches(tensor: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """
    Concatenates `tensor` (first axis = batch) from every process, in rank order. Batches may differ in size
    (e.g. the last batch). With `with_grad`, gradients flow back to the process that owns each row, so the sum over
    processes of local-row losses has the same gradient as one process computing the whole batch.
    """
    if not is_distributed():
        return tensor
    world_size = dist.get_world_size()
    local_size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes = [int(size.item()) for size in sizes]
    padded = F.pad(tensor, (0,) * (2 * (tensor.ndim - 1)) + (0, max(sizes) - tensor.shape[0]))
    if with_grad:
        parts = _AllGatherWithGrad.apply(padded)
    else:
        parts = [torch.zeros_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def vtc_loss(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    temperature: torch.Tensor,
    video_ids: torch.Tensor | None = None,
    gather: bool = True,
    contrast_text_embeds: torch.Tensor | None = None,
    contrast_pair_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Symmetric video-text contrastive loss with multi-positive targets.

    Args:
        text_embeds: (B, E) normalised text embeddings. video_embeds: (B, E) video embeddings (pair i is
            text i with video i). temperature: scalar tensor.
        video_ids: (B,) integer id of each pair's video; captions of the same video are all positives
            (targets spread evenly over them). `None`: every pair is its own video.
        gather: use the other processes' pairs as extra negatives when running distributed.
        contrast_text_embeds: optional (M, E) normalised embeddings of contrast captions (a caption rewritten to be
            false of its video), with contrast_pair_index (M,) the local pair each belongs to: extra columns of the
            video-to-text direction, negatives of the videos whose id is that pair's (NegCLIP's hard negative
            captions). A contrast may be true of another video of the batch (e.g. the twin with the reversed
            motion), so it is masked out of every other video's row. Local to each process.

    Each process scores its own rows against all gathered columns; the mean over processes equals the
    single-process loss of the whole batch.
    """
    video_ids = prepare_video_ids(video_ids, text_embeds.shape[0], text_embeds.device)
    all_text = gather_batches(text_embeds, with_grad=True) if gather else text_embeds
    all_video = gather_batches(video_embeds, with_grad=True) if gather else video_embeds
    all_ids = gather_batches(video_ids, with_grad=False) if gather else video_ids
    logits_t2v = text_embeds @ all_video.T / temperature
    logits_v2t = video_embeds @ all_text.T / temperature
    if contrast_text_embeds is None or len(contrast_text_embeds) == 0:
        return multi_positive_cross_entropy(logits_t2v, logits_v2t, video_ids, all_ids)
    contrast_logits = video_embeds @ contrast_text_embeds.T / temperature
    own = video_ids[:, None] == video_ids[contrast_pair_index][None, :]
    contrast_logits = contrast_logits.masked_fill(~own, float("-inf"))
    return multi_positive_cross_entropy(logits_t2v, logits_v2t, video_ids, all_ids,
                                        extra_negatives_per_video=contrast_logits)


def multi_positive_cross_entropy(
    logits_per_text: torch.Tensor,
    logits_per_video: torch.Tensor,
    video_ids: torch.Tensor,
    all_video_ids: torch.Tensor | None = None,
    extra_negatives_per_video: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Symmetric contrastive cross-entropy in which every caption of a video is a positive: the loss of T2V2T (VTC),
    X-Pool and CRET (both its terms).

    Args:
        logits_per_text: (B, B_all) scores of this process's B texts against all B_all videos (the gathered ones
            too when distributed). logits_per_video: (B, B_all) scores of its B videos against all B_all texts.
        video_ids: (B,) video id of each local (text i, video i) pair. all_video_ids: (B_all,) ids of the columns,
            in the same order; default `video_ids` (one process).
        extra_negatives_per_video: optional (B, M) logits of extra texts that are negatives of each video (-inf
            where a text is not to be compared), appended to `logits_per_video` with zero target.
    Returns:
        The mean of the two directions' cross-entropies, each averaged over rows. Row i's target spreads evenly over
        the columns whose id equals `video_ids[i]` (pair i itself among them).
    """
    all_video_ids = video_ids if all_video_ids is None else all_video_ids
    positives = (video_ids[:, None] == all_video_ids[None, :]).float()  # (B, B_all)
    targets = positives / positives.sum(dim=1, keepdim=True)
    # F.cross_entropy with probability targets is the same quantity, but it sums over all rows before dividing,
    # which moves the result by about 1e-7; written out, the loss stays bitwise what each model computed before.
    loss_t2v = -(F.log_softmax(logits_per_text, dim=1) * targets).sum(dim=1).mean()
    if extra_negatives_per_video is not None:
        logits_per_video = torch.cat([logits_per_video, extra_negatives_per_video], dim=1)
        targets_per_video = F.pad(targets, (0, extra_negatives_per_video.shape[1]))
        # -inf columns have zero target: 0 * -inf would be nan, so they are left out of the sum.
        log_probs = F.log_softmax(logits_per_video, dim=1).masked_fill(targets_per_video == 0, 0.0)
        loss_v2t = -(log_probs * targets_per_video).sum(dim=1).mean()
    else:
        loss_v2t = -(F.log_softmax(logits_per_video, dim=1) * targets).sum(dim=1).mean()
    return (loss_t2v + loss_v2t) / 2


def prepare_video_ids(video_ids, batch: int, device: torch.device) -> torch.Tensor:
    """
    The (batch,) long tensor of video ids on `device` that the contrastive losses take: `video_ids` (a tensor or a
    list of integers, one per pair) checked and converted, or, if `None`, ids that make every pair its own video
    (`default_video_ids`). Raises `ValueError` for floats, booleans or a wrong shape.
    """
    if video_ids is None:
        return default_video_ids(batch, device)
    video_ids = torch.as_tensor(video_ids, device=device)
    if video_ids.dtype.is_floating_point or video_ids.dtype == torch.bool or video_ids.shape != (batch,):
        raise ValueError(
            f"video_ids must be {batch} integers (one per pair), got dtype {video_ids.dtype} and shape "
            f"{tuple(video_ids.shape)}."
        )
    return video_ids.long()


def default_video_ids(batch: int, device: torch.device) -> torch.Tensor:
    """Ids that make every pair its own video, unique across processes (so gathered ids never collide)."""
    rank = dist.get_rank() if is_distributed() else 0
    return torch.arange(batch, device=device) + rank * 2**40


@torch.no_grad()
def sample_vtm_negatives(
    similarity: torch.Tensor,
    video_ids: torch.Tensor,
    hard: bool = True,
    labelled_negatives: torch.Tensor | None = None,
    labelled_probability: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    One negative video per text and one negative text per video, from the local batch.

    Args:
        similarity: (B, B) text-to-video VTC similarity. video_ids: (B,) ids; a pair sharing the video id is
            never drawn as a negative. hard: draw with probability softmax(similarity) (VindLU/ALBEF's hard
            negatives); otherwise uniformly among the negatives.
        labelled_negatives: optional (B, B) bool, True at (i, j) when the video of pair j is a hard negative of
            the caption of pair i that the data names (e.g. the same scene with its motion reversed or its two
            events swapped). labelled_probability: with this probability, drawn independently for each text and
            each video, a text with labelled negatives in the batch takes one of them (uniformly) as its negative
            video, and a video that is a labelled negative of some captions in the batch takes one of those as its
            negative text, instead of the draw above.
    Returns:
        (negative video index per text, negative text index per video, `has_negative` (B,) bool). A row whose
        video is the only one in the batch has no negative: its indices are meaningless and `has_negative` False.
    """
    positives = video_ids[:, None] == video_ids[None, :]
    has_negative = (~positives).any(dim=1)
    similarity = similarity.float()
    if hard:
        # The small floor keeps a valid distribution when softmax underflows for every negative.
        weights_t2v = F.softmax(similarity, dim=1) + 1e-5
        weights_v2t = F.softmax(similarity.T, dim=1) + 1e-5
    else:
        weights_t2v = weights_v2t = torch.ones_like(similarity)
    # Rows without negatives draw their own index, then are masked out by the caller.
    no_negative = torch.diag(~has_negative)
    negative_videos = torch.multinomial(weights_t2v.masked_fill(positives & ~no_negative, 0), 1).squeeze(1)
    negative_texts = torch.multinomial(weights_v2t.masked_fill(positives & ~no_negative, 0), 1).squeeze(1)
    if labelled_negatives is not None and labelled_probability > 0:
        labelled_videos, labelled_texts = draw_labelled_negatives(labelled_negatives, video_ids, labelled_probability)
        for negatives, (drawn, use) in ((negative_videos, labelled_videos), (negative_texts, labelled_texts)):
            negatives[use] = drawn[use]
    return negative_videos, negative_texts, has_negative


def draw_labelled_negatives(
    labelled_negatives: torch.Tensor, video_ids: torch.Tensor, probability: float,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """
    One labelled hard negative video per text and one labelled negative text per video, where the batch holds one.

    Args:
        labelled_negatives: (B, B) bool, as in `sample_vtm_negatives`. video_ids: (B,) ids; a pair sharing the
            video id is never a negative. probability: each row that has a labelled negative takes one (uniformly
            among them) with this probability, drawn independently per text and per video.
    Returns:
        `((negative video per text, used), (negative text per video, used))`: index tensors (B,) and bool masks
        (B,); an index is meaningful only where its mask is True.
    """
    labelled = labelled_negatives.bool() & ~(video_ids[:, None] == video_ids[None, :])
    drawn = []
    for candidates in (labelled, labelled.T):
        use = candidates.any(dim=1) & (torch.rand(len(candidates), device=candidates.device) < probability)
        negatives = torch.zeros(len(candidates), dtype=torch.long, device=candidates.device)
        if bool(use.any()):
            negatives[use] = torch.multinomial(candidates[use].float(), 1).squeeze(1)
        drawn.append((negatives, use))
    return drawn[0], drawn[1]


def mask_tokens(
    input_ids: torch.Tensor,
    mlm_probability: float,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    BERT masking: each non-special token is picked with `mlm_probability`; of those 80% become [MASK], 10% a
    random token, 10% stay. Returns (masked input ids, labels with -100 on unpicked tokens).
    """
    labels = input_ids.clone()
    probability = torch.full(input_ids.shape, mlm_probability, device=input_ids.device)
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for token_id in special_token_ids:
        special |= input_ids == token_id
    probability.masked_fill_(special, 0.0)
    picked = torch.bernoulli(probability).bool()
    labels[~picked] = -100

    masked_ids = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=input_ids.device)).bool() & picked
    masked_ids[to_mask] = mask_token_id
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5, device=input_ids.device)).bool() & picked & ~to_mask
    masked_ids[to_random] = torch.randint(vocab_size, input_ids.shape, device=input_ids.device)[to_random]
    return masked_ids, labels


__all__ = [
    "vtc_loss",
    "multi_positive_cross_entropy",
    "prepare_video_ids",
    "default_video_ids",
    "gather_batches",
    "is_distributed",
    "draw_labelled_negatives",
    "sample_vtm_negatives",
    "mask_tokens",
]
