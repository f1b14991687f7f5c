"""Shared test setup: seeded RNG per test, the `gpu` marker's skip reason, and a clean cache of
timed GEMM choices for the tests that ask for it."""

import zlib

import pytest
import torch

import vitbench  # noqa: F401  (selects the Triton backend before kernels are defined)
from vitbench._backend import HAS_CUDA, INTERPRETER


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA and not INTERPRETER:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; here Triton runs in the interpreter")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed(request):
    # A different but reproducible draw per test: fresh inputs without flaky reruns.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def fresh_gemm_choices():
    # every test starts and ends with no cached GEMM choice (kernels/_dispatch.py; a failure must
    # not leak one): use with pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")
    from vitbench.kernels import _dispatch

    _dispatch.reset()
    yield
    _dispatch.reset()
