"""Training step cost (forward + backward, VTC + VTM) with the VTM pairs through the reference joint encoder
(`T2V2TModel.vtm_loss` -> `fuse`) or through the cached path (`build_joint_cache` on the batch's videos, then
`score_pairs(video_index=..., use_joint_cache=True)`), on the model of a training config with at most one text->video
layer.

Both paths run interleaved in one process on the same batch, with dropout off (the cached path does not apply
attention-probability dropout, so only then are the two the same function; the script checks the losses and
gradients agree).

    git show efcf962:training/configs/synthetic_quickstart.json > /tmp/quickstart_one_t2v_layer.json
    python -m benchmarks.vtm_step_cost --config /tmp/quickstart_one_t2v_layer.json --steps 5 --threads 1
"""

import argparse
import copy
import json
import tempfile
import time

import torch
import torch.nn.functional as F

from modeling_t2v2t.losses_t2v2t import sample_vtm_negatives, vtc_loss
from training.arguments import ModelArguments
from training.model_factory import load_model_and_processor


def step(model, ids, mask, pixels, cached: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)  # the same sampled hard negatives for both paths
    text = model.encode_text(ids, mask)
    video = model.encode_video(pixels)
    similarity = text.text_embeds @ video.video_embeds.T / model.temperature
    video_ids = torch.arange(len(ids))
    loss = vtc_loss(text.text_embeds, video.video_embeds, model.temperature, video_ids)
    if not cached:
        vtm, _ = model.vtm_loss(text, video, similarity.detach(), video_ids)
    else:
        negative_videos, negative_texts, has_negative = sample_vtm_negatives(
            similarity.detach(), video_ids, model.config.vtm_hard_negatives)
        arange = torch.arange(len(ids))
        rows = arange[has_negative]
        text_index = torch.cat([arange, rows, negative_texts[has_negative]])
        video_index = torch.cat([arange, negative_videos[has_negative], rows])
        logits = model.score_pairs(text_encoding=text.select(text_index),
                                   video_encoding=model.build_joint_cache(video), video_index=video_index,
                                   use_joint_cache=True).vtm_logits
        labels = torch.cat([torch.ones_like(arange), torch.zeros(2 * len(rows), dtype=torch.long)])
        vtm = F.cross_entropy(logits.float(), labels)
    loss = loss + vtm
    loss.backward()
    return loss.detach(), vtm.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a training config whose model has at most one text->video "
                        "layer (the cached path's condition), e.g. the quickstart's as of commit efcf962")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's per-device batch")
    parser.add_argument("--tokens", type=int, default=None, help="caption length; default the config's max_length")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.config) as file:
        settings = json.load(file)
    # The config's model, built as the training scripts build it (a from-scratch config, or a pretrained text tower
    # with a from-scratch video tower), with dropout off in both towers.
    model_config = copy.deepcopy(settings["model_config"])
    for tower in ("text_config", "vision_config"):
        model_config.setdefault(tower, {}).update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model_args = ModelArguments(model_config=model_config, num_frames=settings.get("num_frames", 4),
                                text_model_name_or_path=settings.get("text_model_name_or_path"),
                                freeze_text_layers=settings.get("freeze_text_layers", 0))
    torch.manual_seed(0)
    model, _ = load_model_and_processor(model_args, pretraining=False, captions=["a red circle moves left"],
                                        output_dir=tempfile.mkdtemp(prefix="vtm_step_cost."))
    if not model.supports_joint_cache:
        parser.error(f"{args.config}'s model has num_t2v_layers={model.config.num_t2v_layers}; the cached path needs at "
                     f"most one text->video layer (pass --config of such a model, e.g. with num_t2v_layers 1).")
    model.train()
    config = model.config
    batch = args.batch or settings.get("per_device_train_batch_size", 32)
    tokens = args.tokens or settings.get("max_length", 32)
    vision = config.vision_config
    ids = torch.randint(5, config.text_config.vocab_size, (batch, tokens))  # random words: only cost is measured
    mask = torch.ones_like(ids)
    mask[:, tokens // 2:] = torch.rand(batch, tokens - tokens // 2) < 0.3  # some padding, as real captions
    mask = mask.cummin(dim=1).values  # right-padded
    pixels = torch.randn(batch, vision.num_frames, 3, vision.image_size, vision.image_size)

    grads = {}
    for cached in (False, True):  # warm-up + exactness check
        model.zero_grad()
        loss, _ = step(model, ids, mask, pixels, cached)
        grads[cached] = (loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    loss_gap = abs(float(grads[True][0] - grads[False][0]))
    grad_gap = float((grads[True][1] - grads[False][1]).abs().max() / grads[False][1].abs().max())
    seconds, cpu_seconds = {False: 0.0, True: 0.0}, {False: 0.0, True: 0.0}
    for _ in range(args.steps):
        for cached in (False, True):
            model.zero_grad()
            started, cpu = time.perf_counter(), time.process_time()
            step(model, ids, mask, pixels, cached)
            seconds[cached] += time.perf_counter() - started
            cpu_seconds[cached] += time.process_time() - cpu  # a shared machine's wall time includes waiting
    reference, cached = seconds[False] / args.steps, seconds[True] / args.steps
    reference_cpu, cached_cpu = cpu_seconds[False] / args.steps, cpu_seconds[True] / args.steps
    print(f"## Training step (fwd+bwd, VTC+VTM), {args.config}'s model, batch {batch}, {tokens} tokens, "
          f"{args.threads} thread(s), {args.steps} interleaved steps each\n")
    print(f"- reference VTM (fuse): {reference:.3f} s per step (CPU {reference_cpu:.3f} s)")
    print(f"- cached VTM (build_joint_cache + score_pairs): {cached:.3f} s per step (CPU {cached_cpu:.3f} s); "
          f"reference / cached = {reference / cached:.2f}x wall, {reference_cpu / cached_cpu:.2f}x CPU")
    print(f"- loss difference {loss_gap:.2e}; largest gradient difference {grad_gap:.2e} of the largest gradient")


if __name__ == "__main__":
    main()
