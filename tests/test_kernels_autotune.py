"""On a GPU every kernel autotunes through vitbench's shorter tuning benchmark.

Checked without a GPU by defining the kernels with the interpreter off (a subprocess): defining
autotuned kernels needs no driver, only launching them does.
"""

from tests.offline_build import without_interpreter

CODE = """
import importlib, triton
import vitbench
assert not vitbench.INTERPRETER
found = []
for mod in ['matmul', 'attention', 'layernorm', 'softmax', 'bmm', 'patch_embed', 'matmul_tma']:
    m = importlib.import_module('vitbench.kernels.' + mod)
    for name, obj in vars(m).items():
        if isinstance(obj, triton.runtime.autotuner.Autotuner):
            assert obj._do_bench is not None and obj._do_bench.__name__ == '_tune_bench', name
            found.append(name)
print(len(found))
"""


def test_gpu_kernels_use_the_short_tuning_benchmark():
    out = without_interpreter(CODE)
    # one autotuner per kernel module, all seen (in-place GEMMs share theirs: _common.tune_apart)
    assert int(out.split()[-1]) >= 7


def test_fp32_only_configs_are_pruned_for_16_bit_operands():
    # CUDA-core tiles are tried for fp32 operands only; 16-bit GEMMs keep their tensor-core set.
    import importlib

    import torch

    mm = importlib.import_module("vitbench.kernels.matmul")
    extra = mm.gemm_config(128, 128, 16, 3, 8)
    base = mm.gemm_config(64, 64, 64, 4, 4)
    old = mm.FP32_CONFIGS
    mm.FP32_CONFIGS = [extra]
    try:
        half = torch.empty(2, 2, dtype=torch.float16)
        single = torch.empty(2, 2, dtype=torch.float32)
        assert mm.prune_by_smem([base, extra], {"a_ptr": half}) == [base]
        assert mm.prune_by_smem([base, extra], {"a_ptr": single}) == [base, extra]
    finally:
        mm.FP32_CONFIGS = old


def test_autotune_refuses_a_config_name_the_kernel_lacks():
    # bmm and patch_embed share gemm_config with matmul; a matmul-only name (SPLIT_K) in their
    # configs failed only at the first launch on a GPU, never in the interpreter
    import pytest
    import triton

    from vitbench.kernels import _common
    from vitbench.kernels.bmm import _bmm_kernel

    ok = triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 8})
    _common.autotune([ok], key=["M"])(_bmm_kernel)
    bad = triton.Config({**ok.kwargs, "SPLIT_K": 2})
    with pytest.raises(TypeError, match="SPLIT_K"):
        _common.autotune([bad], key=["M"])(_bmm_kernel)


def test_gpu_config_lists_match_their_kernels():
    # The GPU config lists exist only with the interpreter off: import every kernel module that
    # way (no launch, so no GPU needed) and let autotune's name check run on each list.
    code = ("import vitbench, vitbench._backend as b; assert not b.INTERPRETER\n"
            "import importlib\n"
            "for m in ('matmul', 'matmul_tma', 'bmm', 'patch_embed', 'attention', 'layernorm',"
            " 'softmax', 'add'):\n"
            "    importlib.import_module('vitbench.kernels.' + m)\n"
            "M = importlib.import_module('vitbench.kernels.matmul')\n"
            "assert all(c.kwargs['SPLIT_K'] > 1 for c in M.SPLIT_K_CONFIGS)\n"
            "print('ok')")
    assert without_interpreter(code).strip() == "ok"


def test_autotune_picks_lists_each_key_and_config():
    import triton

    from vitbench.kernels import _common

    def kernel(a_ptr, M, N, BLOCK: int):  # stands in for a jit function (only its name is read)
        pass

    class FakeTuner:  # what autotune_picks reads of triton's Autotuner: fn, keys, cache
        fn, keys = staticmethod(kernel), ["M", "N"]
        cache = {(197, 768, "torch.bfloat16", "torch.bfloat16"): triton.Config({"BLOCK": 64}, num_warps=4,
                                                                               num_stages=3)}

    assert _common.autotune_picks([FakeTuner()]) == ["kernel (197, 768) torch.bfloat16 -> BLOCK=64 w4 s3"]
    assert _common.autotune_picks([]) == []
