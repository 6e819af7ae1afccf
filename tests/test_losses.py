"""The loss functions on their own: VTC against a naive loop, the distributed gather against one process,
VTM negative sampling, MLM masking."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from modeling_t2v2t.losses_t2v2t import (
    mask_tokens,
    multi_positive_cross_entropy,
    prepare_video_ids,
    sample_vtm_negatives,
    vtc_loss,
)


def naive_vtc(text, video, temperature, ids):
    """Row-by-row multi-positive InfoNCE, both directions."""
    total = 0.0
    for queries, keys in ((text, video), (video, text)):
        for i in range(len(ids)):
            logits = torch.stack([queries[i] @ keys[j] / temperature for j in range(len(ids))])
            positives = [j for j in range(len(ids)) if ids[j] == ids[i]]
            total = total - sum(F.log_softmax(logits, 0)[j] for j in positives) / len(positives) / len(ids)
    return total / 2


def random_pairs(batch=6, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    video = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    return text, video


def test_vtc_matches_naive_multi_positive_loss():
    text, video = random_pairs()
    ids = torch.tensor([0, 0, 1, 2, 2, 2])
    torch.testing.assert_close(vtc_loss(text, video, torch.tensor(0.1), ids), naive_vtc(text, video, 0.1, ids))
    torch.testing.assert_close(vtc_loss(text, video, torch.tensor(0.1)), naive_vtc(text, video, 0.1, list(range(6))))


def test_vtc_rejects_misshaped_ids():
    text, video = random_pairs()
    with pytest.raises(ValueError, match=r"video_ids must be 6 integers \(one per pair\).*shape \(2,\)"):
        vtc_loss(text, video, torch.tensor(0.1), torch.tensor([0, 1]))


def test_multi_positive_cross_entropy_matches_a_row_by_row_loop():
    """The shared loss on 5 local rows against 8 gathered columns, several captions per video (video 7 has three,
    two of them on another process): each row's loss is minus the mean log-probability of its positive columns."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.tensor([7, 7, 4, 9, 4])
    all_ids = torch.tensor([7, 7, 4, 9, 4, 7, 1, 9])  # columns 5-7 come from another process
    logits_per_text = 3 * torch.randn(5, 8, generator=generator)
    logits_per_video = 3 * torch.randn(5, 8, generator=generator)
    expected = 0.0
    for logits in (logits_per_text, logits_per_video):
        for i in range(5):
            log_probs = [logits[i, j] - torch.logsumexp(logits[i], 0) for j in range(8) if all_ids[j] == ids[i]]
            expected -= sum(log_probs) / len(log_probs) / 5
    loss = multi_positive_cross_entropy(logits_per_text, logits_per_video, ids, all_ids)
    torch.testing.assert_close(loss, expected / 2, atol=1e-6, rtol=0)
    # Row 0 has 3 positives (columns 0, 1, 5), so its target is 1/3 on each: not the diagonal alone.
    diagonal_only = (F.cross_entropy(logits_per_text, torch.arange(5)) + F.cross_entropy(logits_per_video,
                                                                                           torch.arange(5))) / 2
    assert abs(float(loss) - float(diagonal_only)) > 1e-3


def test_multi_positive_cross_entropy_equals_the_formula_the_models_used_before():
    """T2V2T's VTC, X-Pool and CRET each wrote `-(log_softmax(logits) * targets).sum(1).mean()` before sharing this
    function; on one process (square logits, default column ids) it is bitwise the same number."""
    generator = torch.Generator().manual_seed(4)
    ids = torch.tensor([0, 0, 1, 2, 2, 2])
    logits_per_text = 10 * torch.randn(6, 6, generator=generator)
    logits_per_video = logits_per_text.T
    positives = (ids[:, None] == ids[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    before = (-(F.log_softmax(logits_per_text, dim=1) * targets).sum(dim=1).mean()
              - (F.log_softmax(logits_per_video, dim=1) * targets).sum(dim=1).mean()) / 2
    assert torch.equal(multi_positive_cross_entropy(logits_per_text, logits_per_video, ids), before)


def test_prepare_video_ids_converts_checks_and_defaults():
    assert prepare_video_ids([3, 3, 5], 3, "cpu").tolist() == [3, 3, 5]
    assert prepare_video_ids(torch.tensor([1, 2], dtype=torch.int32), 2, "cpu").dtype == torch.long
    default = prepare_video_ids(None, 4, "cpu")
    assert default.dtype == torch.long and len(set(default.tolist())) == 4  # every pair its own video
    for bad in (torch.tensor([0.0, 1.0]), torch.tensor([True, False]), torch.tensor([0, 1, 2])):
        with pytest.raises(ValueError, match=r"video_ids must be 2 integers \(one per pair\)"):
            prepare_video_ids(bad, 2, "cpu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_worker(rank, world_size, port, text, video, ids, sizes, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    start = sum(sizes[:rank])
    rows = slice(start, start + sizes[rank])
    local_text = text[rows].clone().requires_grad_(True)
    local_video = video[rows].clone().requires_grad_(True)
    loss = vtc_loss(local_text, local_video, torch.tensor(0.1), ids[rows])
    loss.backward()
    queue.put((rank, loss.item(), local_text.grad, local_video.grad))
    dist.barrier()
    dist.destroy_process_group()


def _run_two_processes(text, video, ids, sizes):
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_distributed_worker, args=(r, 2, port, text, video, ids, sizes, queue))
                 for r in range(2)]
    for process in processes:
        process.start()
    results = sorted((queue.get(timeout=120) for _ in processes), key=lambda result: result[0])
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return results


@pytest.mark.slow
def test_vtc_gathered_over_two_processes_equals_one_process():
    """Each process scores its 3 rows against all 6 pairs (positives cross the process boundary). The mean of
    the two losses is the one-process loss; each process's gradient is that of the SUM of both losses, so after
    DDP's averaging over 2 processes it is exactly the one-process gradient."""
    text, video = random_pairs(batch=6)
    ids = torch.tensor([0, 0, 1, 2, 3, 3])
    text_full, video_full = text.clone().requires_grad_(True), video.clone().requires_grad_(True)
    full = vtc_loss(text_full, video_full, torch.tensor(0.1), ids)
    full.backward()

    results = _run_two_processes(text, video, ids, (3, 3))
    assert (results[0][1] + results[1][1]) / 2 == pytest.approx(full.item(), abs=1e-6)
    text_grad = torch.cat([result[2] for result in results]) / 2
    video_grad = torch.cat([result[3] for result in results]) / 2
    torch.testing.assert_close(text_grad, text_full.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(video_grad, video_full.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_vtc_gather_handles_unequal_batches():
    """A short last batch (4 + 2 rows): padding is trimmed, so the size-weighted mean loss is the full loss."""
    text, video = random_pairs(batch=6)
    ids = torch.tensor([0, 0, 1, 2, 3, 3])
    full = vtc_loss(text, video, torch.tensor(0.1), ids)
    results = _run_two_processes(text, video, ids, (4, 2))
    assert (4 * results[0][1] + 2 * results[1][1]) / 6 == pytest.approx(full.item(), abs=1e-6)


def test_vtm_negatives_are_never_positives_and_follow_similarity():
    ids = torch.tensor([0, 0, 1, 2])
    similarity = torch.zeros(4, 4)
    similarity[0, 3] = similarity[2, 3] = 10.0  # videos: texts 0 and 2 find video 3 most similar
    torch.manual_seed(0)
    for _ in range(50):
        negative_videos, negative_texts, has_negative = sample_vtm_negatives(similarity, ids)
        assert bool(has_negative.all())
        assert all(ids[negative_videos[i]] != ids[i] for i in range(4))
        assert all(ids[negative_texts[j]] != ids[j] for j in range(4))
        assert negative_videos[0] == 3 and negative_videos[2] == 3  # hard negatives dominate


def test_uniform_vtm_negatives_ignore_the_similarity():
    """`hard=False` (`vtm_hard_negatives=False`): every non-positive is drawn equally often, however the VTC
    similarity favours one (a near-twin); `hard=True` draws that one almost always."""
    torch.manual_seed(0)
    ids = torch.tensor([0, 1, 2, 3, 0])  # rows 0 and 4 share a video: never each other's negative
    similarity = torch.zeros(5, 5)
    similarity[:, 3] = 20.0  # video 3 is every text's near-twin
    draws = {True: torch.zeros(5), False: torch.zeros(5)}
    for _ in range(2000):
        for hard in (True, False):
            negative_videos, _, _ = sample_vtm_negatives(similarity, ids, hard=hard)
            assert negative_videos[0] not in (0, 4) and negative_videos[4] not in (0, 4)
            draws[hard][negative_videos[0]] += 1
    assert draws[True][3] / 2000 > 0.99
    assert (draws[False][[1, 2, 3]] / 2000).tolist() == pytest.approx([1 / 3] * 3, abs=0.04)


def test_vtm_rows_without_negatives_are_flagged():
    _, _, has_negative = sample_vtm_negatives(torch.zeros(3, 3), torch.tensor([5, 5, 5]))
    assert not bool(has_negative.any())
    _, _, has_negative = sample_vtm_negatives(torch.zeros(3, 3), torch.tensor([5, 5, 6]))
    assert has_negative.tolist() == [True, True, True]


def test_mask_tokens_follows_bert_recipe():
    torch.manual_seed(0)
    input_ids = torch.randint(5, 1000, (64, 64))
    input_ids[:, 0], input_ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    input_ids[:, -8:-1] = 0  # padding
    masked, labels = mask_tokens(input_ids, 0.5, mask_token_id=4, vocab_size=1000, special_token_ids=[0, 2, 3])
    picked = labels != -100
    special = (input_ids == 0) | (input_ids == 2) | (input_ids == 3)
    assert not bool((picked & special).any())
    assert torch.equal(labels[picked], input_ids[picked])
    assert torch.equal(masked[~picked], input_ids[~picked])
    assert picked.sum() / (~special).sum() == pytest.approx(0.5, abs=0.03)
    share_masked = (masked[picked] == 4).float().mean()
    share_kept = (masked[picked] == input_ids[picked]).float().mean()
    assert share_masked == pytest.approx(0.8, abs=0.03)
    assert share_kept == pytest.approx(0.1, abs=0.03)  # plus the rare random draw of the same token
