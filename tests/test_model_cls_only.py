"""logits_only: the last layer computes only the CLS row after its attention, same logits.

CPU (Triton interpreter): tiny fp32 configs against the full forward and HF; the model suite's
`cls_only` setting (config file, --cls-only/--no-cls-only, plan, resume). GPU: ViT-B/16 in bf16.
"""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig
from typer.testing import CliRunner

from vitbench._backend import DEVICE
from vitbench.cli import app
from vitbench.errors import VitbenchError
from vitbench.model import checkpoints
from vitbench.model.configs import hf_config
from vitbench.model.modules import TritonViT
from vitbench.numerics import rel_err
from vitbench.suites.model import plan_model, run_model
from vitbench.suites.model_config import load_model_config

# a classifier; odd sizes: 3 heads of 16, qkv without bias, tanh GELU, 1 layer, 7 labels, T=17
CASES = {
    "vit-tiny-test": hf_config("vit-tiny-test"),
    "odd": ViTConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=3,
                     intermediate_size=80, image_size=24, patch_size=6, num_labels=7,
                     qkv_bias=False, hidden_act="gelu_new"),
}


def _pixels(B: int, spec, dtype=torch.float32) -> torch.Tensor:
    x = torch.rand(B, spec.channels, spec.image_h, spec.image_w) * 2 - 1
    return x.to(device=DEVICE, dtype=dtype)


@pytest.mark.parametrize("name", list(CASES))
def test_logits_only_matches_full_forward_and_hf(name):
    ckpt = checkpoints.random_weights(CASES[name], seed=7, head=True)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    x = _pixels(3, ckpt.spec)
    with torch.inference_mode():
        hidden, pooled, full = tri(x)
        got = tri(x, logits_only=True)
        want = checkpoints.hf_model(ckpt, attn_implementation="eager")(pixel_values=x).logits
    assert got[0] is None and got[1] is None and hidden is not None and pooled is None
    logits = got[2]
    assert logits.shape == full.shape == (3, ckpt.spec.num_labels) and logits.dtype == torch.float32
    assert rel_err(logits, full) <= 1e-5, rel_err(logits, full)
    assert rel_err(logits, want) <= 1e-4, rel_err(logits, want)
    with torch.inference_mode():  # the residual stream is per call: a full forward after it agrees
        again = tri(x)
    assert torch.equal(again[0], hidden) and torch.equal(again[2], full)


def test_logits_only_without_a_head_returns_the_full_outputs():
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, image_size=16, patch_size=8)
    ckpt = checkpoints.random_weights(cfg, seed=2, head=False, pooler=True)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    x = _pixels(2, ckpt.spec)
    with torch.inference_mode():
        full, fast = tri(x), tri(x, logits_only=True)
    assert fast[2] is None and full[2] is None
    assert torch.equal(fast[0], full[0]) and fast[0].shape == (2, ckpt.spec.tokens, 32)
    assert torch.equal(fast[1], full[1])


# --- the model suite's setting ------------------------------------------------------------------
def test_config_file_cls_only_good_and_bad_values(tmp_path):
    path = tmp_path / "model.yaml"
    assert load_model_config(None).cls_only is True
    for text, want in (("cls_only: false\n", False), ("cls_only: true\n", True)):
        path.write_text(text)
        assert load_model_config(path).cls_only is want
    path.write_text("cls_only: maybe\n")
    with pytest.raises(VitbenchError) as info:
        load_model_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "cls_only" in msg and "'maybe'" in msg and "\n" not in msg
    path.write_text("interpreter: {cls_only: false}\n")  # not an interpreter override
    with pytest.raises(VitbenchError, match="interpreter.cls_only"):
        load_model_config(path)


def test_plan_records_cls_only_and_the_triton_provider_uses_it(tmp_path, monkeypatch):
    def plan(**kw):
        return plan_model(batch="1", model="vit-tiny-test", dtype="fp32", providers="triton", **kw)

    cfg_off = tmp_path / "off.yaml"
    cfg_off.write_text("cls_only: false\n")
    on = plan()
    assert on.config["cls_only"] is True and "cls_only" in on.config["resume_keys"]
    assert plan(cls_only=False).config["cls_only"] is False
    assert plan(config=cfg_off).config["cls_only"] is False
    assert plan(config=cfg_off, cls_only=True).config["cls_only"] is True  # the flag wins

    seen = []
    real = TritonViT.forward

    def spy(self, pixels, **kw):
        seen.append(kw.get("logits_only", False))
        return real(self, pixels, **kw)

    monkeypatch.setattr(TritonViT, "forward", spy)
    for p, want in ((on, True), (plan(cls_only=False), False)):
        case = p.cases[0]
        x = case.inputs()
        out = p.providers[0].prepare(case, x)()
        assert out.shape == (1, 10) and seen[-1] is want
        assert rel_err(out, case.reference(x)) <= 1e-4


def test_headless_checkpoint_records_cls_only_off(tmp_path):
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, image_size=16, patch_size=8)
    checkpoints._random_hf_model(cfg, seed=0, head=False, pooler=True).save_pretrained(tmp_path)
    plan = plan_model(batch="1", dtype="fp32", providers="hf-sdpa", weights=str(tmp_path))
    assert plan.config["cls_only"] is False  # nothing to skip: recorded as what runs


def test_cli_flag_reaches_the_plan(monkeypatch):
    import vitbench.suites.model as suite

    seen = []

    def fake_plan(**kw):
        seen.append(kw["cls_only"])
        raise VitbenchError("stop here")

    monkeypatch.setattr(suite, "plan_model", fake_plan)
    for args in ([], ["--cls-only"], ["--no-cls-only"]):
        res = CliRunner().invoke(app, ["model", *args])
        assert isinstance(res.exception, VitbenchError), res.output
    assert seen == [None, True, False]


def test_resume_refuses_another_cls_only_setting(tmp_path):
    def plan(cls_only):  # HF only: quick, but the setting is recorded all the same
        return plan_model(batch="1", model="vit-tiny-test", dtype="fp32", providers="hf-sdpa",
                          cls_only=cls_only)

    run_model(plan(True), out_dir=tmp_path, progress=False)
    with pytest.raises(VitbenchError, match="cannot resume, config cls_only was true when the run "
                                            "started, now false"):
        run_model(plan(False), out_dir=tmp_path, resume=True, progress=False)
    res = run_model(plan(True), out_dir=tmp_path, resume=True, progress=False)
    assert res.skipped == 1


# --- GPU: ViT-B/16 bf16 ------------------------------------------------------------------------
@pytest.mark.gpu
def test_vit_b16_bf16_logits_only_matches_full_on_gpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    ckpt = checkpoints.random_weights(hf_config("vit-base-patch16-224"))
    x = _pixels(3, ckpt.spec)
    with torch.inference_mode():
        hf = checkpoints.hf_model(ckpt, device="cuda", attn_implementation="eager")  # fp32
        ref = hf(pixel_values=x).logits
        tri = TritonViT(ckpt.spec, ckpt.local).to(device="cuda", dtype=torch.bfloat16)
        _, _, full = tri(x.bfloat16())
        hidden, pooled, fast = tri(x.bfloat16(), logits_only=True)
    assert hidden is None and pooled is None and fast.shape == (3, 1000) and fast.dtype == torch.bfloat16
    assert torch.isfinite(fast).all()
    # other GEMM/attention tiles on B rows may round differently: bf16-level agreement, and the
    # CLS-only logits no further from the fp32 reference than 1.5x the full forward's
    assert rel_err(fast, full) <= 1e-2, rel_err(fast, full)
    assert rel_err(fast, ref) <= 1.5 * rel_err(full, ref), (rel_err(fast, ref), rel_err(full, ref))
