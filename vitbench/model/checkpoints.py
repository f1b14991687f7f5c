"""Where weights come from: a live HF model, an HF directory, the hub, or a seeded random init.

Every source ends as a `Checkpoint`: the HF config, the tensors under local names (see
weights.py) and the validated spec. `hf_model(ckpt, ...)` rebuilds an HF model holding exactly
those tensors, so the Triton model and every HF/torch.compile baseline run the same weights.
Remote code is never trusted: configs are read as plain `ViTConfig`s.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from vitbench.errors import VitbenchError
from vitbench.model.configs import NAMED, ViTSpec, hf_config
from vitbench.model.weights import detect_layout, from_local, to_local

DEFAULT_SEED = 0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass
class Checkpoint:
    config: object  # transformers.ViTConfig
    local: dict[str, torch.Tensor]  # local name -> tensor (CPU, as stored)
    spec: ViTSpec
    source: str  # human-readable origin, e.g. "random (seed 0)" or "dir /path"


def from_hf_model(model) -> Checkpoint:
    """A live `ViTModel` / `ViTForImageClassification` (any device/dtype)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "state_dict"):
        raise VitbenchError(f"expected an HF ViT model with a .config, got {type(model).__name__}")
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    local, spec = to_local(sd, config)
    return Checkpoint(config, local, spec, f"model {type(model).__name__}")


def random_weights(config, *, seed: int = DEFAULT_SEED, head: bool = True, pooler: bool = False) -> Checkpoint:
    """Build the HF model from `config` with a fixed seed (HF's own init), then convert it."""
    model = _random_hf_model(config, seed=seed, head=head, pooler=pooler)
    ckpt = from_hf_model(model)
    ckpt.source = f"random (seed {seed})"
    return ckpt


def _random_hf_model(config, *, seed: int, head: bool, pooler: bool):
    from transformers import ViTForImageClassification, ViTModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = copy.deepcopy(config)
        if head:
            return ViTForImageClassification(config).eval()
        return ViTModel(config, add_pooling_layer=pooler).eval()


def _read_config(path: Path):
    from transformers import ViTConfig

    file = path / "config.json"
    if not file.is_file():
        raise VitbenchError(f"no config.json in weights directory {str(path)!r}")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise VitbenchError(f"cannot read {str(file)!r}: {exc}") from None
    if data.get("model_type") != "vit":
        raise VitbenchError(f"{str(file)!r} has model_type {data.get('model_type')!r}; only 'vit' is supported")
    return ViTConfig.from_dict(data)  # plain ViTConfig: auto_map / remote code is ignored


def _weight_files(path: Path) -> list[Path]:
    """The checkpoint files of an HF directory: safetensors preferred, shards via their index."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (path / single).is_file():
            return [path / single]
        if (path / index).is_file():
            try:
                shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError) as exc:
                raise VitbenchError(f"cannot read shard index {str(path / index)!r}: {exc}") from None
            return [path / s for s in shards]
    raise VitbenchError(f"no model.safetensors or pytorch_model.bin in weights directory {str(path)!r}")


def _read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise VitbenchError(f"checkpoint shard {str(f)!r} is missing")
        try:
            if f.suffix == ".safetensors":
                from safetensors.torch import load_file

                sd.update(load_file(str(f), device="cpu"))
            else:  # weights_only: a .bin cannot run code while loading
                sd.update(torch.load(f, map_location="cpu", weights_only=True))
        except VitbenchError:
            raise
        except Exception as exc:  # corrupt file, not a checkpoint, pickle with code, ...
            raise VitbenchError(f"cannot load checkpoint {str(f)!r}: {str(exc).splitlines()[0]}") from None
    return sd


def from_directory(path: str | os.PathLike) -> Checkpoint:
    """A directory written by HF `save_pretrained` (safetensors or .bin, sharded or not)."""
    path = Path(path)
    if not path.is_dir():
        raise VitbenchError(f"weights directory {str(path)!r} does not exist")
    config = _read_config(path)
    local, spec = to_local(_read_state_dict(_weight_files(path)), config)
    return Checkpoint(config, local, spec, f"dir {path}")


def from_hub(repo_id: str) -> Checkpoint:
    """Download (or find in the local cache) a hub checkpoint; honours HF_HUB_OFFLINE."""
    from huggingface_hub import snapshot_download

    if not _HUB_ID.match(repo_id):
        raise VitbenchError(f"--weights {repo_id!r} is neither 'random', a directory, nor a hub id")
    patterns = ["config.json", "model.safetensors", "model.safetensors.index.json",
                "model-*.safetensors"]
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(repo_id, allow_patterns=["config.json", "pytorch_model*.bin*"]))
    except Exception as exc:  # offline, unreachable, unknown repo, gated, ...
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        where = ("HF_HUB_OFFLINE is set and it is not in the local cache" if offline
                 else f"hub unreachable or repository unavailable: {why}")
        raise VitbenchError(f"cannot get weights {repo_id!r} from the HF hub ({where}); "
                            "use --weights random or a local directory") from None
    ckpt = from_directory(path)
    ckpt.source = f"hub {repo_id}"
    return ckpt


def load(weights: str, model: str) -> Checkpoint:
    """Resolve the CLI's --weights: 'random' (config of the named `model`), a directory, a hub id."""
    if weights == "random":
        return random_weights(hf_config(model))
    weights = os.path.expanduser(weights)  # `--weights=~/ckpt` reaches us unexpanded
    if os.path.isdir(weights):
        return from_directory(weights)
    if weights.startswith((".", "/", "~")) or weights.count("/") > 1:
        raise VitbenchError(f"weights directory {weights!r} does not exist")
    if weights in NAMED:
        raise VitbenchError(f"--weights {weights!r} is a model name; use --model {weights} --weights random")
    return from_hub(weights)


def hf_model(ckpt: Checkpoint, *, dtype: torch.dtype = torch.float32, device="cpu",
             attn_implementation: str = "eager"):
    """A fresh HF model (eval) holding the checkpoint's tensors, in the installed key layout."""
    from transformers import ViTForImageClassification, ViTModel

    config = copy.deepcopy(ckpt.config)
    with torch.device("meta"):  # no random init: every tensor is assigned below
        if ckpt.spec.num_labels:
            model = ViTForImageClassification(config)
        else:
            model = ViTModel(config, add_pooling_layer=ckpt.spec.pooler)
    layout, prefix = detect_layout(model.state_dict().keys())
    sd = from_local(ckpt.local, layout, prefix, ckpt.spec.layers)
    model.load_state_dict(sd, strict=True, assign=True)
    model.set_attn_implementation(attn_implementation)
    return model.to(device=device, dtype=dtype).eval()
