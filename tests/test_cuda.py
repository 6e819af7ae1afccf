"""The same models on a CUDA device as on the CPU: every method's retrieval outputs and loss, a training step with
labelled VTM negatives under bf16 autocast, and exact reranking through the retriever's cached path.

CI has no GPU, so every test here is skipped there; they run on a machine with one (`pytest tests/test_cuda.py`).
Tolerances: float32 with TF32 matmuls switched off, so CPU and GPU differ only in summation order (measured
differences are ~1e-6; the bound is 1e-4 relative to the largest magnitude of each output).
"""

import pytest
import torch
from test_cret import tiny_cret
from test_xpool import tiny_xpool
from tiny_models import tiny_config, tiny_inputs

from modeling_t2v2t import T2V2TModel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    # TF32 would round matmul inputs to 10 mantissa bits on Ampere and later: a different computation, not noise.
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def to(inputs: dict, device) -> dict:
    return {key: value.to(device) for key, value in inputs.items()}


def assert_close(cpu: torch.Tensor, gpu: torch.Tensor, name: str) -> None:
    gpu = gpu.detach().float().cpu()
    cpu = cpu.detach().float()
    scale = max(cpu.abs().max().item(), 1e-6)
    difference = (cpu - gpu).abs().max().item()
    assert difference <= TOLERANCE * scale, f"{name}: CPU and CUDA differ by {difference:.3g} (scale {scale:.3g})"


def joint_models():
    for fusion_mode in ("t2v2t", "naive_t2v2t", "v2t", "none"):
        for bypass_mode in (("self", "null") if fusion_mode == "t2v2t" else ("self",)):
            torch.manual_seed(0)
            config = tiny_config(num_t2v_layers=2, fusion_mode=fusion_mode, bypass_mode=bypass_mode)
            yield f"{fusion_mode}-{bypass_mode}", T2V2TModel(config).eval()


@pytest.mark.parametrize("name,model", list(joint_models()), ids=lambda value: value if isinstance(value, str) else "")
def test_t2v2t_family_matches_cpu(name, model):
    inputs = tiny_inputs(model.config, batch=4)
    with torch.no_grad():
        cpu = model(**inputs, return_loss=True)
        cpu_scores = model.score_pairs(**{k: inputs[k] for k in ("input_ids", "attention_mask",
                                                                  "pixel_values_videos")}) \
            if model.config.has_joint_encoder else None
        model.cuda()
        gpu = model(**to(inputs, "cuda"), return_loss=True)
        gpu_scores = model.score_pairs(**to({k: inputs[k] for k in ("input_ids", "attention_mask",
                                                                     "pixel_values_videos")}, "cuda")) \
            if model.config.has_joint_encoder else None
    for field in ("logits_per_text", "text_embeds", "video_embeds", "loss_vtc"):
        assert_close(cpu[field], gpu[field], f"{name} {field}")
    if cpu_scores is not None:
        # VTM's loss draws random negatives (different generators on each device); the aligned pairs' match
        # logits and the rerank scores are deterministic.
        assert_close(cpu.vtm_logits, gpu.vtm_logits, f"{name} vtm_logits")
        assert_close(cpu_scores.scores, gpu_scores.scores, f"{name} rerank scores")


@pytest.mark.parametrize("build", [tiny_xpool, tiny_cret], ids=["xpool", "cret"])
def test_baselines_match_cpu(build):
    model = build()
    inputs = tiny_inputs(tiny_config(), batch=4)
    with torch.no_grad():
        cpu = model(**inputs, return_loss=True)
        gpu = model.cuda()(**to(inputs, "cuda"), return_loss=True)
    assert_close(cpu.logits_per_text, gpu.logits_per_text, "logits_per_text")
    assert_close(cpu.loss, gpu.loss, "loss")


def test_training_step_with_labelled_negatives_on_cuda():
    # The quickstart's training step on a GPU: bf16 autocast, labelled VTM negatives drawn on the device (a mask on
    # another device would fail in `sample_vtm_negatives`), gradients reaching the towers and both fusion stages.
    torch.manual_seed(0)
    # Temporal gates open (the quickstart's start), so the temporal attention gets gradients too.
    config = tiny_config(num_t2v_layers=2, vtm_labelled_negative_prob=1.0,
                         vision_config={"temporal_scale_init_value": 1.0})
    model = T2V2TModel(config).cuda().train()
    inputs = to(tiny_inputs(model.config, batch=4), "cuda")
    labelled = torch.zeros(4, 4, dtype=torch.bool, device="cuda")
    labelled[2, 3] = labelled[3, 2] = True
    with torch.autocast("cuda", dtype=torch.bfloat16):
        output = model(**inputs, return_loss=True, labelled_negatives=labelled)
    output.loss.backward()
    assert torch.isfinite(output.loss) and output.loss_vtm > 0
    missing = [name for name, parameter in model.named_parameters()
               if parameter.requires_grad and (parameter.grad is None or not parameter.grad.abs().sum() > 0)]
    assert not [name for name in missing if name.startswith(("t2v_layers.", "vision_model.layers.", "itm_head.",
                                                             "text_model.encoder.layer.1."))], missing


def test_reranking_cache_matches_reference_on_cuda():
    # The retriever's exact fast path (per-video keys and values cached once) against the straightforward fusion,
    # both on the GPU.
    torch.manual_seed(0)
    model = T2V2TModel(tiny_config(num_t2v_layers=1)).cuda().eval()
    inputs = to(tiny_inputs(model.config, batch=4), "cuda")
    with torch.no_grad():
        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        videos = model.encode_video(inputs["pixel_values_videos"])
        index = torch.tensor([0, 1, 2, 3], device="cuda")
        cached = model.score_pairs(text_encoding=text, video_encoding=videos, video_index=index, use_joint_cache=True)
        reference = model.score_pairs(text_encoding=text, video_encoding=videos, video_index=index,
                                      use_joint_cache=False)
    assert_close(reference.scores.cpu(), cached.scores, "cached rerank scores")
