"""Loading HF ViT weights: save_pretrained directories (safetensors, .bin), both key layouts,
with/without the `vit.` prefix, strict key checks, the hub when offline, and --weights parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from transformers import ViTConfig, ViTForImageClassification, ViTModel

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.model import checkpoints
from vitbench.model.configs import hf_config
from vitbench.model.modules import TritonViT
from vitbench.model.weights import detect_layout, from_local, to_local
from vitbench.numerics import rel_err

TINY = hf_config("vit-tiny-test")


def _same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), k


def _save_dir(path, config: ViTConfig, sd: dict) -> None:
    """An HF-style directory written by hand: config.json + model.safetensors."""
    path.mkdir()
    config.to_json_file(str(path / "config.json"))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def tiny():
    return checkpoints.random_weights(TINY, seed=1)


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_save_pretrained_roundtrip_gives_equal_outputs(tmp_path, tiny, safe):
    model = checkpoints.hf_model(tiny)
    model.save_pretrained(tmp_path)
    if not safe:  # transformers 5 always writes safetensors; a .bin as transformers 4 wrote it
        (tmp_path / "model.safetensors").unlink()
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    loaded = checkpoints.from_directory(tmp_path)
    _same_tensors(loaded.local, tiny.local)
    assert loaded.spec == tiny.spec
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).to(DEVICE)
    with torch.inference_mode():
        a = TritonViT(tiny.spec, tiny.local).to(DEVICE)(x)[2]
        b = TritonViT(loaded.spec, loaded.local).to(DEVICE)(x)[2]
    assert torch.equal(a, b)


def test_installed_transformers_uses_a_known_layout():
    layout, prefix = detect_layout(ViTForImageClassification(TINY).state_dict())
    assert layout in ("v5", "classic") and prefix == "vit."
    layout, prefix = detect_layout(ViTModel(TINY).state_dict())
    assert prefix == ""


@pytest.mark.parametrize("layout", ["classic", "v5"])
@pytest.mark.parametrize("prefix", ["vit.", ""])
def test_both_key_layouts_load(tmp_path, layout, prefix):
    # A checkpoint in either layout, written by renaming keys ourselves (classic = transformers 4).
    ckpt = checkpoints.random_weights(TINY, seed=2, head=prefix == "vit.", pooler=prefix == "")
    sd = from_local(ckpt.local, layout, prefix, TINY.num_hidden_layers)
    if layout == "classic":
        assert f"{prefix}encoder.layer.0.attention.attention.query.weight" in sd
        assert f"{prefix}encoder.layer.1.intermediate.dense.bias" in sd
    else:
        assert f"{prefix}layers.0.attention.q_proj.weight" in sd
    _save_dir(tmp_path / "ckpt", TINY, sd)
    loaded = checkpoints.from_directory(tmp_path / "ckpt")
    _same_tensors(loaded.local, ckpt.local)
    assert loaded.spec.pooler == (prefix == "") and bool(loaded.spec.num_labels) == (prefix == "vit.")
    # ... and an HF model (installed layout) rebuilt from it computes the original's outputs.
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        a = checkpoints.hf_model(loaded)(pixel_values=x)
        b = checkpoints.hf_model(ckpt)(pixel_values=x)
    key = "logits" if prefix else "pooler_output"
    assert rel_err(a[key], b[key]) == 0.0


def _hf_sd(ckpt):
    return from_local(ckpt.local, "classic", "vit.", TINY.num_hidden_layers)


def test_missing_key_is_named(tiny):
    sd = _hf_sd(tiny)
    del sd["vit.encoder.layer.1.output.dense.weight"]
    with pytest.raises(VitbenchError, match=r"missing keys.*vit\.encoder\.layer\.1\.output\.dense\.weight"):
        to_local(sd, TINY)


def test_unexpected_keys_are_named(tiny):
    sd = _hf_sd(tiny)
    sd["vit.encoder.layer.2.output.dense.weight"] = torch.zeros(64, 128)  # a third layer
    with pytest.raises(VitbenchError, match=r"unexpected keys.*encoder\.layer\.2\.output\.dense\.weight"):
        to_local(sd, TINY)
    sd = _hf_sd(tiny)
    sd["vit.embeddings.mask_token"] = torch.zeros(1, 1, 64)
    with pytest.raises(VitbenchError, match="mask_token"):
        to_local(sd, TINY)
    # q/k/v biases in a checkpoint whose config says qkv_bias=False
    no_bias = ViTConfig(**{**TINY.to_dict(), "qkv_bias": False})
    with pytest.raises(VitbenchError, match=r"unexpected keys.*attention\.query\.bias"):
        to_local(_hf_sd(tiny), no_bias)


def test_misshaped_key_is_named_with_shapes(tiny):
    sd = _hf_sd(tiny)
    sd["vit.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(96, 64)
    with pytest.raises(VitbenchError, match=r"misshaped.*intermediate\.dense\.weight \(96, 64\) \(expected \(128, 64\)\)"):
        to_local(sd, TINY)


def test_mixed_layouts_are_refused(tiny):
    sd = _hf_sd(tiny)
    sd.update(from_local({"blocks.0.q.weight": tiny.local["blocks.0.q.weight"]}, "v5", "vit.", 2))
    with pytest.raises(VitbenchError, match="mixes"):
        to_local(sd, TINY)


def test_directory_errors(tmp_path, tiny):
    with pytest.raises(VitbenchError, match="does not exist"):
        checkpoints.from_directory(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitbenchError, match="no config.json"):
        checkpoints.from_directory(tmp_path / "empty")
    TINY.to_json_file(str(tmp_path / "empty" / "config.json"))
    with pytest.raises(VitbenchError, match="no model.safetensors or pytorch_model.bin"):
        checkpoints.from_directory(tmp_path / "empty")
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(VitbenchError, match="cannot load checkpoint"):
        checkpoints.from_directory(tmp_path / "empty")
    (tmp_path / "deit").mkdir()
    (tmp_path / "deit" / "config.json").write_text(json.dumps({"model_type": "deit"}))
    with pytest.raises(VitbenchError, match="model_type 'deit'"):
        checkpoints.from_directory(tmp_path / "deit")


def test_weights_argument_resolution(tmp_path):
    ckpt = checkpoints.load("random", "vit-tiny-test")
    assert ckpt.source == "random (seed 0)" and ckpt.spec.num_labels == 10
    again = checkpoints.load("random", "vit-tiny-test")
    _same_tensors(ckpt.local, again.local)  # fixed seed: every provider and run the same weights
    with pytest.raises(VitbenchError, match="does not exist"):
        checkpoints.load("./no/such/dir", "vit-tiny-test")
    with pytest.raises(VitbenchError, match="model name"):
        checkpoints.load("vit-tiny-test", "vit-tiny-test")
    with pytest.raises(VitbenchError, match="unknown model"):
        checkpoints.load("random", "vit-gigantic")


def test_offline_hub_id_is_one_line_error_suggesting_random():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-vitbench-hf-home"}
    proc = subprocess.run([sys.executable, "-m", "vitbench", "model", "--weights",
                           "google/vit-base-patch16-224", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "google/vit-base-patch16-224" in lines[0] and "--weights random" in lines[0]
    assert "HF_HUB_OFFLINE" in lines[0]


def test_pooler_weights_beside_a_classifier_are_ignored_like_hf(tiny):
    # A ViTForImageClassification checkpoint that also carries `vit.pooler.*` (HF drops them).
    sd = dict(checkpoints.hf_model(tiny).state_dict())
    prefix = "vit." if any(k.startswith("vit.") for k in sd) else ""
    D = TINY.hidden_size
    sd[f"{prefix}pooler.dense.weight"] = torch.randn(D, D)
    sd[f"{prefix}pooler.dense.bias"] = torch.randn(D)
    local, spec = to_local(sd, TINY)
    assert spec.num_labels == TINY.num_labels and not spec.pooler
    assert not any(k.startswith("pooler.") for k in local)


def test_weights_directory_with_a_tilde_is_expanded(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    checkpoints.hf_model(tiny).save_pretrained(tmp_path / "ckpt")
    loaded = checkpoints.load("~/ckpt", "vit-tiny-test")
    _same_tensors(loaded.local, tiny.local)
