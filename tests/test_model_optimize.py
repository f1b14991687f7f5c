"""vitbench.optimize(hf_model): a drop-in with HF's outputs, usable in an HF pipeline; CUDA graphs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTModel, pipeline

import vitbench
from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.model import OptimizedViT, checkpoints
from vitbench.model.configs import hf_config
from vitbench.numerics import rel_err

IMAGE = Path(__file__).parent / "data" / "grace_hopper_224.jpg"  # from matplotlib's sample data


def _labelled(config: ViTConfig) -> ViTConfig:
    config.id2label = {i: f"class_{i}" for i in range(config.num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    return config


def test_classifier_output_fields_match_hf():
    torch.manual_seed(0)
    hf = ViTForImageClassification(hf_config("vit-tiny-test")).eval()
    opt = vitbench.optimize(hf)
    assert isinstance(opt, OptimizedViT) and isinstance(opt, torch.nn.Module)
    assert opt.config is hf.config and opt.dtype == torch.float32 and opt.device.type == DEVICE.type
    assert not opt.can_generate()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        want = hf(pixel_values=x)
        got = opt(pixel_values=x)
        as_tuple = opt(x, return_dict=False)
    assert rel_err(got.logits, want.logits) <= 1e-4
    assert rel_err(got["logits"], want["logits"]) <= 1e-4 and rel_err(got[0], want[0]) <= 1e-4
    assert got.last_hidden_state.shape == (2, 17, 64) and got.pooler_output is None
    assert torch.equal(as_tuple[0], got.logits)


def test_base_model_with_pooler_fields_match_hf():
    torch.manual_seed(1)
    hf = ViTModel(hf_config("vit-tiny-test"), add_pooling_layer=True).eval()
    opt = vitbench.optimize(hf)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        want, got = hf(x), opt(x)
    assert not hasattr(got, "logits") or got.get("logits") is None
    assert rel_err(got.last_hidden_state, want.last_hidden_state) <= 1e-4
    assert rel_err(got.pooler_output, want.pooler_output) <= 1e-4
    assert rel_err(got[0], want[0]) <= 1e-4


def test_bad_inputs_are_refused():
    hf = ViTForImageClassification(hf_config("vit-tiny-test")).eval()
    opt = vitbench.optimize(hf)
    with pytest.raises(VitbenchError, match=r"pixel_values has shape \(1, 3, 64, 64\)"):
        opt(torch.zeros(1, 3, 64, 64))
    with pytest.raises(VitbenchError, match="interpolate_pos_encoding"):
        opt(torch.zeros(1, 3, 32, 32), interpolate_pos_encoding=True)
    with pytest.raises(VitbenchError, match="dtype"):
        vitbench.optimize(hf, dtype=torch.float64)
    if DEVICE.type == "cpu":
        with pytest.raises(VitbenchError, match="CUDA"):
            vitbench.optimize(hf, graphs=True)
    with pytest.raises(VitbenchError, match="hidden_act"):
        vitbench.optimize(ViTForImageClassification(ViTConfig(**{
            **hf_config("vit-tiny-test").to_dict(), "hidden_act": "relu"})))


def _top5(pipe, image) -> list[str]:
    return [r["label"] for r in pipe(image, top_k=5)]


def test_pipeline_on_a_real_image_gives_hf_top5():
    # Small random config; the processor resizes the photo to the model's 32x32.
    torch.manual_seed(2)
    config = _labelled(ViTConfig(**{**hf_config("vit-tiny-test").to_dict(), "num_labels": 12}))
    hf = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    image = Image.open(IMAGE)
    want = pipeline("image-classification", model=hf, image_processor=processor)(image, top_k=5)
    got = pipeline("image-classification", model=vitbench.optimize(hf),
                   image_processor=processor)(image, top_k=5)
    assert [r["label"] for r in got] == [r["label"] for r in want]
    for g, w in zip(got, want):
        assert abs(g["score"] - w["score"]) < 1e-5
    assert len({r["label"] for r in got}) == 5


# --- GPU ---------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_graph_replay_equals_eager(dtype):
    from vitbench.model.graphs import GraphRunner
    from vitbench.model.modules import TritonViT

    ckpt = checkpoints.random_weights(hf_config("vit-base-patch16-224"))
    model = TritonViT(ckpt.spec, ckpt.local).to(device="cuda", dtype=dtype)

    def forward(px):
        with torch.inference_mode():
            return model(px)

    runner = GraphRunner(forward)
    for B in (1, 8, 3):
        x = (torch.rand(B, 3, 224, 224, device="cuda") * 2 - 1).to(dtype)
        eager = [t.clone() for t in forward(x) if t is not None]
        for _ in range(2):  # captured once, then replayed; a new input each call
            replay = [t.clone() for t in runner(x) if t is not None]
            for e, r in zip(eager, replay):
                assert torch.equal(e, r)
        x2 = (torch.rand_like(x.float()) * 2 - 1).to(dtype)
        replay2 = runner(x2)[2].clone()
        assert torch.equal(replay2, forward(x2)[2])
    assert sorted(s[0] for s in runner.shapes()) == [1, 3, 8]


@pytest.mark.gpu
def test_pipeline_on_gpu_vit_b16_top5(monkeypatch):
    # fp32 both sides, TF32 off in HF (cuDNN's conv would use it by default): same numbers to ~1e-6
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(3)
    config = _labelled(hf_config("vit-base-patch16-224"))
    hf = ViTForImageClassification(config).eval().to("cuda")
    processor = ViTImageProcessor(size={"height": 224, "width": 224})
    image = Image.open(IMAGE)
    want = pipeline("image-classification", model=hf, image_processor=processor, device=0)(image)
    opt = vitbench.optimize(hf)
    assert opt.use_graphs
    got = pipeline("image-classification", model=opt, image_processor=processor, device=0)(image)
    assert [r["label"] for r in got] == [r["label"] for r in want]


def test_identity_head_gives_cls_state_as_logits():
    config = hf_config("vit-tiny-test")
    config.num_labels = 0  # HF then uses nn.Identity as the classifier
    hf = ViTForImageClassification(config).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        want, got = hf(pixel_values=x).logits, vitbench.optimize(hf)(x).logits
    assert got.shape == want.shape == (1, 64) and rel_err(got, want) <= 1e-4


def test_outputs_are_ordinary_tensors_a_caller_may_modify():
    torch.manual_seed(0)
    opt = vitbench.optimize(ViTForImageClassification(hf_config("vit-tiny-test")).eval())
    logits = opt(pixel_values=torch.rand(1, 3, 32, 32)).logits
    assert not logits.is_inference()
    logits /= 2.0  # raised "Inplace update to inference tensor" before


@pytest.mark.gpu
def test_gpu_graph_captured_in_inference_mode_replays_outside_it():
    # The static input made under torch.inference_mode is an inference tensor: a later call outside
    # that mode must still copy its new input in (it failed with "Inplace update to inference tensor").
    from vitbench.model.graphs import GraphRunner

    runner = GraphRunner(lambda px: px * 2)
    with torch.inference_mode():
        x = torch.rand(2, 3, device="cuda")
        assert torch.equal(runner(x).clone(), x * 2)
    y = torch.rand(2, 3, device="cuda")
    assert torch.equal(runner(y), y * 2)


@pytest.mark.gpu
def test_gpu_cold_autotuning_first_in_inference_mode_then_outside_it(monkeypatch):
    # The L2-flush buffer of cold autotuning is made on first use: under torch.inference_mode it
    # must still be an ordinary tensor, or every later cold timing outside that mode fails (found by
    # test_pipeline_on_gpu_vit_b16_top5 after another test had autotuned in inference mode).
    from vitbench.kernels import _common

    monkeypatch.setattr(_common, "_FLUSH", {})
    monkeypatch.setattr(_common, "_FLUSH_MS", {})
    x = torch.zeros(16, device="cuda")
    with torch.inference_mode():
        assert _common.graph_ms(lambda: x.add(1), 2, cold=True) >= 0
    assert _common.graph_ms(lambda: x.add(1), 2, cold=True) >= 0
    assert not next(iter(_common._FLUSH.values())).is_inference()
