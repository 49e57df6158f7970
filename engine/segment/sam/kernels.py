"""Fused CPU kernels for the SAM decoder: C compiled on first use, cached, ctypes-loaded.

``engine/segment/sam/csrc/sam_kernels.c`` holds passes that torch runs as chains of elementwise ops,
each streaming the whole array through memory: the bias + LayerNorm + GELU between the
mask upscaling's two transposed convolutions, and the softmax over the prompt tokens of
the image->token attention. The first call compiles it with the system C compiler (``$CC``
or ``cc``, ``-O3 -march=native -ffast-math``) into ``$XDG_CACHE_HOME/dataengine`` (default
``~/.cache/dataengine``), keyed by the source, the flags and this CPU's feature flags, and
loads it with ctypes, whose calls release the GIL (the generator's worker threads run them
side by side).

Every function falls back to the torch ops it replaces when no compiler is available, for
tensors off the CPU or not float32, or with ``DATAENGINE_KERNELS=torch``; both agree to
float32 rounding (tests/engine/segment/sam/test_kernels.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from engine.segment.sam.fast_path import is_disabled

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "sam_kernels.c"
# -ffast-math for compiling only: linked with it, the library would switch the whole
# process to flush-denormals-to-zero when loaded (crtfastmath.o)
FLAGS = [
    "-O3",
    "-march=native",
    "-mprefer-vector-width=512",
    "-ffast-math",
    "-fopenmp-simd",
    "-fPIC",
]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "dataengine"


def _build() -> ctypes.CDLL | None:
    if os.environ.get("DATAENGINE_KERNELS", "c") == "torch" or platform.system() != "Linux":
        return None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        logger.warning("no C compiler found: the SAM decoder's fused kernels run as torch ops")
        return None
    key = hashlib.sha256(
        b"\0".join([SOURCE.read_bytes(), " ".join(FLAGS).encode(), _cpu_flags().encode()])
    )
    path = _cache_dir() / f"sam_kernels-{key.hexdigest()[:16]}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            obj = tmp.with_suffix(".o")
            try:
                for cmd in (
                    [cc, *FLAGS, "-c", "-o", str(obj), str(SOURCE)],
                    [cc, "-shared", "-o", str(tmp), str(obj), "-lm"],
                ):
                    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                os.replace(tmp, path)  # atomic: a concurrent builder never loads half a file
            finally:
                obj.unlink(missing_ok=True)
                tmp.unlink(missing_ok=True)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as err:
        stderr = getattr(err, "stderr", None) or b""
        logger.warning(
            "the SAM decoder's fused kernels were not built (%s %s): using torch ops",
            err,
            stderr[:400].decode(errors="replace"),
        )
        return None
    f32, i64, ptr = ctypes.c_float, ctypes.c_int64, ctypes.c_void_p
    lib.de_upscale_norm_gelu.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, f32, ptr, i64, i64, i64]
    lib.de_upscale_norm_gelu.restype = None
    lib.de_softmax_mid.argtypes = [ptr, i64, i64, i64]
    lib.de_softmax_mid.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on the first call (None: the torch fallbacks run)."""
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _lib = _build()
                _tried = True
    return _lib


def _native(*tensors: torch.Tensor | None) -> ctypes.CDLL | None:
    """The library when every given tensor is a CPU float32 tensor (else None)."""
    if is_disabled("kernels"):
        return None
    for t in tensors:
        if t is not None and (t.device.type != "cpu" or t.dtype != torch.float32):
            return None
    return library()


def is_exact_gelu(act: torch.nn.Module) -> bool:
    """Whether ``act`` is the erf GELU (the only activation the kernels implement)."""
    return isinstance(act, torch.nn.GELU) and act.approximate == "none"


def upscale_norm_act(
    y: torch.Tensor,
    b1: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    act: torch.nn.Module,
    us: torch.Tensor | None = None,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """The upscaling between its two transposed convolutions, for one tile of tokens.

    y: tokens x (G*c) first ConvT output without its bias b1 (G*c); ``us`` (tokens x G*c)
    scaled per token by ``alpha`` (tokens) is added when both are given. Returns
    (tokens*G) x c: act(LayerNorm over each token's G groups of c channels, * weight + bias).
    The kernel runs for the exact GELU, the torch ops for anything else.
    """
    c = weight.shape[0]
    tokens, width = y.shape
    if us is None or alpha is None:
        us = alpha = None
    lib = _native(y, b1, weight, bias, us, alpha)
    if lib is None or not is_exact_gelu(act) or width % c or width > 4096:
        v = y + b1 if us is None else torch.addcmul(y + b1, us, alpha[:, None])
        return act(F.layer_norm(v.reshape(-1, c), (c,), weight, bias, eps))
    y, b1, weight, bias = (t.contiguous() for t in (y, b1, weight, bias))
    if us is not None:
        us, alpha = us.contiguous(), alpha.contiguous()
    out = torch.empty(tokens * (width // c), c, dtype=y.dtype)
    lib.de_upscale_norm_gelu(
        y.data_ptr(),
        None if us is None else us.data_ptr(),
        None if alpha is None else alpha.data_ptr(),
        b1.data_ptr(),
        weight.data_ptr(),
        bias.data_ptr(),
        eps,
        out.data_ptr(),
        tokens,
        width // c,
        c,
    )
    return out


def softmax_dim2_(s: torch.Tensor) -> torch.Tensor:
    """In place softmax over dim 2 of a BxHxTxN tensor whose every ``s[i]`` is contiguous."""
    lib = _native(s)
    if lib is None or s.dim() != 4 or not all(s[i].is_contiguous() for i in range(len(s))):
        s.sub_(s.amax(dim=2, keepdim=True)).exp_()
        return s.div_(s.sum(dim=2, keepdim=True))
    _, h, t, n = s.shape
    for i in range(len(s)):
        lib.de_softmax_mid(s[i].data_ptr(), h, t, n)
    return s
