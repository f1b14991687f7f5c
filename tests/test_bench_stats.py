"""Statistics of timing samples, geometric mean, roofline classification, CSV cells."""

import math

import numpy as np
import pytest

from vitbench.bench import csvio
from vitbench.bench.peaks import gemm_key, roofline
from vitbench.bench.stats import NOISE_WARN, geomean, quantile, summarize


def test_summary_of_a_known_sample():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])  # order must not matter
    assert s.n == 5
    assert s.median_ms == 3.0
    assert s.mean_ms == 3.0
    assert s.p10_ms == pytest.approx(1.4)  # linear interpolation: 1 + 0.4 * (2 - 1)
    assert s.p90_ms == pytest.approx(4.6)
    assert s.std_ms == pytest.approx(math.sqrt(2.5))  # sample std (n - 1)
    assert s.noise == pytest.approx((4.0 - 2.0) / 3.0)  # IQR / median
    assert s.noisy


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_quantiles_match_numpy(n):
    rng = np.random.default_rng(n)
    xs = rng.lognormal(mean=-2.0, sigma=0.3, size=n)
    s = summarize(xs.tolist())
    assert s.median_ms == pytest.approx(np.median(xs))
    assert s.p10_ms == pytest.approx(np.quantile(xs, 0.10))
    assert s.p90_ms == pytest.approx(np.quantile(xs, 0.90))
    assert s.mean_ms == pytest.approx(xs.mean())
    assert s.std_ms == pytest.approx(xs.std(ddof=1) if n > 1 else 0.0)
    iqr = np.quantile(xs, 0.75) - np.quantile(xs, 0.25)
    assert s.noise == pytest.approx(iqr / np.median(xs))


def test_noise_threshold():
    quiet = summarize([1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01])
    assert quiet.noise < NOISE_WARN and not quiet.noisy
    loud = summarize([1.0, 1.3, 0.8, 1.5, 0.7, 1.0, 1.2])
    assert loud.noise > NOISE_WARN and loud.noisy


def test_bad_samples_rejected():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_geomean_is_not_the_arithmetic_mean():
    # x2 and x0.5 cancel out: geometric mean 1, arithmetic mean 1.25.
    assert geomean([2.0, 0.5]) == pytest.approx(1.0)
    assert geomean([4.0, 1.0, 2.0]) == pytest.approx(2.0)
    assert geomean([]) is None
    with pytest.raises(ValueError):
        geomean([1.0, 0.0])


PEAKS = {"copy_gbps": 3000.0, "gemm_tflops": {"bf16": 750.0, "fp16": 750.0, "fp32": 50.0,
                                              "tf32": 380.0}}


def test_roofline_memory_bound_uses_copy_bandwidth():
    # add of 1e8 fp32 elements: 1e8 FLOP, 1.2e9 bytes, in 0.5 ms -> 2400 GB/s = 80% of 3000.
    tfl, gbs, pct, bound = roofline(1e8, 1.2e9, 0.5, "fp32", "", PEAKS)
    assert bound == "memory"
    assert gbs == pytest.approx(2400.0)
    assert pct == pytest.approx(80.0)
    assert tfl == pytest.approx(0.2)


def test_roofline_compute_bound_uses_dtype_peak():
    # 4096^3 GEMM in bf16: 2*4096^3 FLOP over 3*4096^2*2 bytes: intensity 1365 > ridge 250.
    flops, nbytes = 2 * 4096**3, 3 * 4096**2 * 2
    ms = flops / 600e12 * 1e3  # at 600 TFLOP/s
    tfl, gbs, pct, bound = roofline(flops, nbytes, ms, "bf16", "", PEAKS)
    assert bound == "compute"
    assert tfl == pytest.approx(600.0)
    assert pct == pytest.approx(80.0)
    # The same GEMM in fp32: against the fp32 peak, or the tf32 one when TF32 is on.
    assert roofline(flops, nbytes * 2, ms, "fp32", "ieee", PEAKS)[2] == pytest.approx(1200.0)
    assert roofline(flops, nbytes * 2, ms, "fp32", "tf32", PEAKS)[2] == pytest.approx(600 / 3.8)
    assert gemm_key("fp32", "tf32") == "tf32" and gemm_key("fp32", "") == "fp32"
    # fp32 split modes: the tensor-core peak they run on over the products per fp32 product
    bf16x6 = PEAKS["gemm_tflops"]["bf16"] / 6
    assert roofline(flops, nbytes * 2, ms, "fp32", "bf16x6", PEAKS)[2] == pytest.approx(100 * 600 / bf16x6)
    tf32x3 = PEAKS["gemm_tflops"]["tf32"] / 3
    assert roofline(flops, nbytes * 2, ms, "fp32", "tf32x3", PEAKS)[2] == pytest.approx(100 * 600 / tf32x3)
    assert gemm_key("fp32", "bf16x3") == "bf16" and gemm_key("bf16", "bf16x6") == "bf16"


def test_roofline_without_peaks_has_no_percentage():
    none = {"copy_gbps": None, "gemm_tflops": {k: None for k in PEAKS["gemm_tflops"]}}
    tfl, gbs, pct, _ = roofline(1e9, 1e6, 1.0, "bf16", "", none)
    assert pct is None and tfl == pytest.approx(1.0) and gbs == pytest.approx(1.0)


def test_csv_cells_and_tail_repair(tmp_path):
    assert csvio._cell(None) == "" and csvio._cell(True) == "true" and csvio._cell(0.5) == "0.5"
    assert csvio._cell(float("inf")) == "inf"
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n3,")  # a row cut in the middle by a kill
    csvio._repair_tail(p)
    assert p.read_text() == "a,b\n1,2\n"
