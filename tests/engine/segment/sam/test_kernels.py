"""The compiled SAM decoder kernels equal the torch ops they replace; failures fall back."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from engine.segment.sam import kernels as sam_kernels


@pytest.fixture
def lib() -> object:
    built = sam_kernels.library()
    if built is None:
        pytest.skip("no C compiler here: the torch fallbacks are what runs")
    return built


def _fresh_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the loaded library so the next call builds (or refuses) again."""
    monkeypatch.setattr(sam_kernels, "_lib", None)
    monkeypatch.setattr(sam_kernels, "_tried", False)


@pytest.mark.parametrize("shared_part", [True, False])
def test_upscale_norm_gelu_equals_torch(lib: object, shared_part: bool) -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(300, 256, generator=g) * 3 + 1
    b1 = torch.randn(256, generator=g)
    w, b = torch.rand(64, generator=g) + 0.5, torch.randn(64, generator=g)
    us = torch.randn(300, 256, generator=g) if shared_part else None
    alpha = torch.rand(300, generator=g) + 0.5 if shared_part else None
    got = sam_kernels.upscale_norm_act(y, b1, w, b, 1e-6, torch.nn.GELU(), us, alpha)
    v = y + b1 + (alpha[:, None] * us if shared_part else 0)
    want = F.gelu(F.layer_norm(v.reshape(-1, 64), (64,), w, b, 1e-6))
    assert got.shape == (1200, 64)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def test_softmax_in_place_in_a_buffer_view(lib: object) -> None:
    g = torch.Generator().manual_seed(1)
    buf = torch.randn(3, 60, 1000, generator=g) * 5
    before = buf.clone()
    s = buf[:, 2:58].view(3, 8, 7, 1000)  # each prompt's block contiguous, not the whole
    assert sam_kernels.softmax_dim2_(s) is s
    want = torch.softmax(before[:, 2:58].view(3, 8, 7, 1000), dim=2)
    torch.testing.assert_close(s, want, atol=1e-6, rtol=1e-5)
    assert torch.equal(buf[:, :2], before[:, :2]) and torch.equal(buf[:, 58:], before[:, 58:])


def test_loading_keeps_denormals(lib: object) -> None:
    """Linked with -ffast-math the library would turn on flush-to-zero for the process."""
    assert np.finfo(np.float32).smallest_subnormal > 0
    assert float(torch.tensor(1e-40) * torch.tensor(1.0)) != 0.0


def test_torch_only_by_request(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_build(monkeypatch)
    monkeypatch.setenv("DATAENGINE_KERNELS", "torch")
    assert sam_kernels.library() is None
    s = torch.randn(2, 3, 4, 50)
    torch.testing.assert_close(sam_kernels.softmax_dim2_(s.clone()), torch.softmax(s, dim=2))


def test_failed_build_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which("false") is None:
        pytest.skip("no `false` command to stand in for a broken compiler")
    _fresh_build(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    with caplog.at_level(logging.WARNING, logger="engine.segment.sam.kernels"):
        assert sam_kernels.library() is None
    assert "not built" in caplog.text
    assert not list(tmp_path.rglob("*.so"))
    y = torch.randn(10, 256)
    out = sam_kernels.upscale_norm_act(
        y, torch.zeros(256), torch.ones(64), torch.zeros(64), 1e-6, torch.nn.GELU()
    )
    torch.testing.assert_close(out, F.gelu(F.layer_norm(y.reshape(-1, 64), (64,), eps=1e-6)))


def test_other_activations_take_the_torch_path() -> None:
    g = torch.Generator().manual_seed(2)
    y, b1 = torch.randn(20, 256, generator=g), torch.randn(256, generator=g)
    w, b = torch.rand(64, generator=g) + 0.5, torch.randn(64, generator=g)
    got = sam_kernels.upscale_norm_act(y, b1, w, b, 1e-6, torch.nn.ReLU())
    want = torch.relu(F.layer_norm((y + b1).reshape(-1, 64), (64,), w, b, 1e-6))
    torch.testing.assert_close(got, want)
