"""The Triton ViT forward, built from vitbench.kernels only (plus views and a tanh).

Embedding (1 launch): patch GEMM [B*NP, C*p*p] x [C*p*p, D] with bias and position embeddings
fused into its epilogue, written into rows 1..T-1 of the token buffer h [B, T, D]; the same
launch writes row 0 = cls + pos[0] (folded at load time).              FLOPs 2*B*NP*C*p*p*D
Per encoder layer, 7 kernel launches, no per-head Python loop (T tokens, A = H*d, M = MLP size):
  y   = layernorm(h)                                   [B, T, D]
  qkv = matmul(y, Wqkv, bqkv)                          [B, T, 3A]   one fused QKV GEMM, 6BTDA FLOPs
  q, k, v = strided views of qkv                       [B, H, T, d] each (no copy)
  attention(q, k, v) -> buffer [B, T, H, d]            head-interleaved = [B, T, A], 4BT^2A FLOPs
  h   = matmul(attn, Wo, bo, epilogue=residual(h))     [B, T, D]    residual fused, in place, 2BTAD
  y   = layernorm(h)
  m   = matmul(y, W1, b1, epilogue=gelu)               [B, T, M]    GELU fused, 2BTDM
  h   = matmul(m, W2, b2, epilogue=residual(h))        [B, T, D]    residual fused, in place, 2BTMD
Head: final layernorm over all tokens (last_hidden_state); pooler tanh(dense(CLS)) and the
classifier on the CLS row read it through a strided [B, D] view (no copy).
logits_only=True (a model with a classifier head; only logits come back): the last layer's
layernorm and QKV GEMM still cover all T tokens (attention needs every key and value), but its
attention runs the CLS query alone against the T keys (4BTA FLOPs, not 4BT^2A), and its
out-projection, ln2, FC1 and FC2 (2BAD + 4BDM) and the final layernorm run on the B CLS rows only,
read and updated in place through a strided [B, 1, D] view of h. Same launches, minus the pooler.
Weights live in buffers (module.to(device/dtype) moves them); q/k/v are fused at load time.
Folded layernorms (kernels/_lnfold.py; VITBENCH_LN_FOLD=auto, the default: forwards of at most
512 token rows; 1: all; 0: none): ln2, and ln1 from layer 1 on, are folded into the FC1 / QKV
weights; the out-projection and FC2 store h's row stats as they write it, and the folded GEMM
normalises in its epilogue: 23 layernorm launches fewer, h never normalised in memory.
"""

from __future__ import annotations

import torch
from torch import nn

from vitbench.kernels import attention, layernorm, matmul, patch_embed
from vitbench.kernels._common import round_tf32_
from vitbench.kernels._lnfold import (
    CHUNK, LNFold, fold_layernorm, ln_fold_rows, ln_fold_setting, row_stats_buffer,
)
from vitbench.model.configs import ViTSpec


class Embed(nn.Module):
    """pixels [B, C, H, W] -> tokens [B, T, D]: patch GEMM + position embeddings + CLS row."""

    def __init__(self, w: dict[str, torch.Tensor]):
        super().__init__()
        self.register_buffer("patch_w", w["embed.patch.weight"].clone())  # [D, C, p, p]
        self.register_buffer("patch_b", w["embed.patch.bias"].clone())  # [D]
        pos = w["embed.pos"]  # [1, T, D]
        # CLS row is constant: cls + pos[0] folded once (in fp32, rounded once like HF's add).
        self.register_buffer("cls_pos", (w["embed.cls"].float() + pos[:, :1].float()).to(pos.dtype))
        self.register_buffer("pos_patches", pos[0, 1:].clone())  # [NP, D]

    def forward(self, pixels: torch.Tensor, precision: str) -> torch.Tensor:
        B, (NP, D) = pixels.shape[0], self.pos_patches.shape
        h = torch.empty(B, NP + 1, D, dtype=self.patch_w.dtype, device=pixels.device)  # [B, T, D]
        # patches + bias + position embeddings in one GEMM epilogue, written into rows 1..T-1;
        # the same launch copies the constant CLS row (cls + pos[0]) into row 0 of every image
        patch_embed(pixels, self.patch_w, self.patch_b, precision=precision,
                    pos_embed=self.pos_patches, out=h[:, 1:],
                    cls_token=self.cls_pos.view(D), cls_out=h[:, 0])  # [B, NP, D]
        return h


class Block(nn.Module):
    """Pre-norm encoder layer; updates the residual stream h [B, T, D] in place.

    With `fold` (VITBENCH_LN_FOLD not 0, kernels/_lnfold.py) and 16-bit weights: ln2 (and ln1
    from layer 1 on) can be folded into the FC1 (QKV) weights; a forward given `stats` uses them,
    and its out-projection and FC2 store h's row stats for them. The buffers keep the original
    weights (the state dict is unchanged); the folded ones are derived from them whenever the
    module moves or is cast (`_apply`) and kept beside them: QKV and FC1 weights twice, +58% of
    ViT-B/16's weight memory (99 MB in bf16). fp32 weights are not folded: the folded GEMM
    multiplies the un-centred h, so rounding (TF32 above all) grows with a row's |mean| / std
    (1e-3 more error at mean/std 30 with TF32, interpreter), where 16-bit operands are exact in
    the fp32 accumulator."""

    def __init__(self, spec: ViTSpec, w: dict[str, torch.Tensor], i: int, *, fold: bool = False):
        super().__init__()
        p = f"blocks.{i}."
        self.heads, self.head_dim, self.eps, self.act = spec.heads, spec.head_dim, spec.eps, spec.act
        for ln in ("ln1", "ln2"):
            self.register_buffer(ln + "_w", w[p + ln + ".weight"].clone())  # [D]
            self.register_buffer(ln + "_b", w[p + ln + ".bias"].clone())  # [D]
        # Fused QKV: rows [q; k; v] -> [3A, D]; biases likewise (absent when qkv_bias=False).
        self.register_buffer("qkv_w", torch.cat([w[p + x + ".weight"] for x in "qkv"]))
        self.register_buffer("qkv_b", torch.cat([w[p + x + ".bias"] for x in "qkv"]) if spec.qkv_bias else None)
        for name in ("o", "fc1", "fc2"):
            self.register_buffer(name + "_w", w[p + name + ".weight"].clone())  # [N, K]
            self.register_buffer(name + "_b", w[p + name + ".bias"].clone())  # [N]
        # Layer 0's ln1 reads the patch embedding's output, which stores no row stats: not folded.
        self.fold, self.first = fold, i == 0
        self._refold()

    def _refold(self) -> None:
        """folded[lin] = (W', b', colsum) from the current weights: W' = W diag(gamma) and
        b' = b + W beta computed in fp32, rounded once to the weights' dtype; colsum = fp32 row
        sums of that rounded W'. Empty unless folding and the weights are 16-bit."""
        self.folded = {}
        if not self.fold or self.qkv_w.dtype == torch.float32:
            return
        for ln, lin in (("ln1", "qkv"), ("ln2", "fc1")):
            if not (lin == "qkv" and self.first):
                self.folded[lin] = fold_layernorm(getattr(self, ln + "_w"), getattr(self, ln + "_b"),
                                                  getattr(self, lin + "_w"), getattr(self, lin + "_b"))

    def round_tf32_(self) -> None:
        """The four GEMM weights rounded in place to TF32 values (fp32 ones; _common.round_tf32_):
        what the TF32 GEMMs do to them anyway, done once so that they may run with tf32_exact."""
        for name in ("qkv_w", "o_w", "fc1_w", "fc2_w"):
            round_tf32_(getattr(self, name))

    @property
    def fold_ln1(self) -> bool:
        return "qkv" in self.folded

    @property
    def fold_ln2(self) -> bool:
        return "fc1" in self.folded

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._refold()  # the folded weights follow every move and cast of the originals
        return out

    def forward(self, h: torch.Tensor, precision: str, *, cls_only: bool = False,
                stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Returns h after this layer; with cls_only, only its CLS rows: a [B, 1, D] view of h
        (rows 1..T-1 still hold the layer's input: only keys and values are read from them).
        `stats` (folded layernorms): two [B*T, 2, D/32] fp32 buffers, the first holding h's row
        stats on entry (from the previous layer's FC2) and on exit; the second for this layer's."""
        B, T, D = h.shape
        H, d = self.heads, self.head_dim
        fold_ln1, fold_ln2 = stats is not None and self.fold_ln1, stats is not None and self.fold_ln2
        # TF32: every GEMM input but the residual stream is stored as TF32 values by its producer
        # (tf32_out) and the weights are (TritonViT.round_tf32_), so the GEMMs may take the TMA
        # kernel, whose TF32 loads truncate (tf32_exact); 16-bit weights ignore both flags
        t32 = precision == "tf32"
        if fold_ln1:  # ln1 folded: QKV reads h itself
            w_f, b_f, colsum = self.folded["qkv"]
            qkv = matmul(h, w_f, b_f, precision=precision, ln=LNFold(stats[0], colsum, self.eps))  # [B, T, 3A]
        else:
            y = layernorm(h, self.ln1_w, self.ln1_b, self.eps, tf32_out=t32)  # [B, T, D]
            qkv = matmul(y, self.qkv_w, self.qkv_b, precision=precision, tf32_exact=t32)  # [B, T, 3A]
        q, k, v = qkv.view(B, T, 3, H, d).permute(2, 0, 3, 1, 4)  # 3 x [B, H, T, d], strided
        if cls_only:  # from here on, the CLS row only: query [B, H, 1, d], residual [B, 1, D]
            q, h = q[:, :, :1], h[:, :1]
        Tq = q.shape[2]  # query rows: T, or 1
        ctx = torch.empty(B, Tq, H, d, dtype=h.dtype, device=h.device)  # [B, Tq, H, d] = [B, Tq, A]
        attention(q, k, v, out=ctx.permute(0, 2, 1, 3), precision=precision, tf32_out=t32)
        rows = B * Tq
        mid = stats[1][:rows] if fold_ln2 else None  # h's row stats after the out-projection
        h = matmul(ctx.view(B, Tq, H * d), self.o_w, self.o_b, epilogue="residual", residual=h, out=h,
                   precision=precision, row_stats=mid, tf32_exact=t32)  # h += attn @ Wo^T + bo
        if fold_ln2:  # ln2 folded: FC1 reads h itself
            w_f, b_f, colsum = self.folded["fc1"]
            m = matmul(h, w_f, b_f, epilogue=self.act, precision=precision,
                       ln=LNFold(mid, colsum, self.eps), tf32_out=t32)  # [B, Tq, M]
        else:
            y = layernorm(h, self.ln2_w, self.ln2_b, self.eps, tf32_out=t32)  # [B, Tq, D]
            m = matmul(y, self.fc1_w, self.fc1_b, epilogue=self.act, precision=precision,
                       tf32_exact=t32, tf32_out=t32)  # [B, Tq, M]
        # the next layer's ln1 stats (its QKV has read this layer's already); none after CLS-only
        out_stats = stats[0] if stats is not None and not cls_only else None
        return matmul(m, self.fc2_w, self.fc2_b, epilogue="residual", residual=h, out=h,
                      precision=precision, row_stats=out_stats, tf32_exact=t32)  # h += fc2(m)


class TritonViT(nn.Module):
    """ViT forward on vitbench kernels; returns (last_hidden_state, pooler_output, logits)."""

    def __init__(self, spec: ViTSpec, w: dict[str, torch.Tensor], *, precision: str = "ieee"):
        super().__init__()
        self.spec, self.precision = spec, precision
        self.embed = Embed(w)
        # folded layernorms (kernels/_lnfold.py): widths of a multiple of 32, 16-bit weights; the
        # folded weights are kept beside the originals unless VITBENCH_LN_FOLD=0, and a forward
        # uses them per its row count (ln_fold_rows)
        mode = ln_fold_setting()  # a bad value is an error whatever the width
        self.fold_mode = mode if spec.dim % CHUNK == 0 else "0"
        self.fold = self.fold_mode != "0"
        self.blocks = nn.ModuleList(Block(spec, w, i, fold=self.fold) for i in range(spec.layers))
        self.register_buffer("norm_w", w["norm.weight"].clone())  # [D]
        self.register_buffer("norm_b", w["norm.bias"].clone())  # [D]
        self.register_buffer("pooler_w", w["pooler.weight"].clone() if spec.pooler else None)  # [P, D]
        self.register_buffer("pooler_b", w["pooler.bias"].clone() if spec.pooler else None)  # [P]
        self.register_buffer("head_w", w["head.weight"].clone() if spec.num_labels else None)  # [L, D]
        self.register_buffer("head_b", w["head.bias"].clone() if spec.num_labels else None)  # [L]
        self._round_tf32()
        # load_state_dict copies values into the buffers in place (no _apply): round them again
        self.register_load_state_dict_post_hook(_round_tf32_after_load)

    def _round_tf32(self) -> None:
        """precision "tf32": the encoder's GEMM weights hold TF32 values (Block.round_tf32_), as
        their GEMMs' tf32_exact promises. Done at build, after every move or cast and after
        load_state_dict; a weight changed in place otherwise must be rounded again by its changer
        (vitbench.kernels._common.round_tf32_), or the TMA kernel truncates it."""
        if self.precision == "tf32":
            for block in self.blocks:
                block.round_tf32_()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._round_tf32()  # after every move and cast (an fp64 -> fp32 cast makes new values)
        return out

    def forward(self, pixels: torch.Tensor, *, logits_only: bool = False):
        """pixels [B, C, H, W] in the weights' dtype -> (last_hidden_state [B, T, D],
        pooler_output [B, P] or None, logits [B, L] or None).

        logits_only=True, on a model with a classifier head: (None, None, logits), the last layer
        computed past its attention for the CLS row only (module docstring). Without a head it
        changes nothing (there is nothing to skip): the full outputs come back.
        """
        prec = self.precision
        cls_only = logits_only and self.head_w is not None
        h = self.embed(pixels, prec)  # [B, T, D], residual stream, updated in place
        last = len(self.blocks) - 1
        B, T, D = h.shape
        folded = any(b.fold_ln2 for b in self.blocks) and ln_fold_rows(self.fold_mode, B * T)
        stats = (row_stats_buffer(B * T, D, h.device), row_stats_buffer(B * T, D, h.device)) if folded else None
        for i, block in enumerate(self.blocks):
            h = block(h, prec, cls_only=cls_only and i == last, stats=stats)
        if cls_only:
            h = h[:, :1]  # [B, 1, D] (already so after the last layer; also with no layers)
        out = layernorm(h, self.norm_w, self.norm_b, self.spec.eps)  # [B, T, D] ([B, 1, D])
        cls = out[:, 0]  # [B, D], strided rows (matmul reads them; no copy)
        if cls_only:
            return None, None, matmul(cls, self.head_w, self.head_b, precision=prec)  # [B, L]
        pooled = logits = None
        if self.pooler_w is not None:
            # TODO(vitbench#6): a tanh epilogue in matmul would make this one launch.
            pooled = torch.tanh(matmul(cls, self.pooler_w, self.pooler_b, precision=prec))  # [B, P]
        if self.head_w is not None:
            logits = matmul(cls, self.head_w, self.head_b, precision=prec)  # [B, L]
        return out, pooled, logits


def _round_tf32_after_load(module: TritonViT, _incompatible_keys) -> None:
    """load_state_dict post-hook (a module-level function: the model stays picklable)."""
    module._round_tf32()
