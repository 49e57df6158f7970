"""Registry of SAM-family checkpoints, builders, verified loading and on-request download.

``MODELS`` maps a model type to its official download URL and sha256. Neither Meta nor
the MobileSAM authors publish sha256 digests next to their files; the values below are the
ones independently pinned by many downstream projects (checked against several of them),
so a download that does not match is treated as corrupt. Set an entry's ``sha256`` to None
to skip the check for a file you trust.

Nothing here touches the network unless ``download`` is called explicitly (the
``dataengine models download NAME`` command); tests never call it against the internet.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import torch

MODELS: dict[str, dict[str, Any]] = {
    "vit_t": {
        "url": "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "filename": "mobile_sam.pt",
        "sha256": "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        "size_mb": 39,
        "description": "MobileSAM (TinyViT encoder), 10M params, fastest on CPU",
    },
    "vit_b": {
        "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "filename": "sam_vit_b_01ec64.pth",
        "sha256": "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        "size_mb": 358,
        "description": "SAM ViT-B, 91M params",
    },
    "vit_l": {
        "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        "filename": "sam_vit_l_0b3195.pth",
        "sha256": "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        "size_mb": 1191,
        "description": "SAM ViT-L, 308M params",
    },
    "vit_h": {
        "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "filename": "sam_vit_h_4b8939.pth",
        "sha256": "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        "size_mb": 2446,
        "description": "SAM ViT-H, 636M params, the paper's model",
    },
}


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other name as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ChecksumError(ValueError):
    """A checkpoint's sha256 differs from the expected one."""


def _require_known(model_type: str) -> None:
    if model_type not in MODELS:
        raise ValueError(f"unknown SAM model type {model_type!r}; choose one of {sorted(MODELS)}")


def build_sam(model_type: str, checkpoint: Path | None = None) -> torch.nn.Module:
    """Build the architecture for ``model_type`` with random weights (no file is read).

    vit_b/l/h come from ``segment_anything``, vit_t (MobileSAM) from ``mobile_sam``.
    Use ``load_checkpoint`` to load verified weights; ``checkpoint`` here is accepted only
    for signature compatibility and, when given, is loaded strictly without a hash check.
    """
    _require_known(model_type)
    if model_type == "vit_t":
        with warnings.catch_warnings():
            # timm re-registers TinyViT names on import; harmless third-party noise.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            from mobile_sam import sam_model_registry as registry
    else:
        from segment_anything import sam_model_registry as registry
    model = registry[model_type]()
    if checkpoint is not None:
        _load_state(model, Path(checkpoint), "cpu")
    return model.eval()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _load_state(model: torch.nn.Module, path: Path, device: str) -> None:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, OSError, EOFError) as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}; is it a SAM .pth file?") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {path} does not fit this architecture ({err}); "
            "check that --model matches the checkpoint (vit_t is mobile_sam.pt)"
        ) from err


def load_checkpoint(
    model_type: str, path: Path, sha256: str | None = None, device: str = "cpu"
) -> torch.nn.Module:
    """Build ``model_type``, verify ``path`` against ``sha256`` (when given), load strictly, eval().

    Raises ChecksumError naming the expected and actual digest, FileNotFoundError when the
    file is missing, ValueError when the state dict does not fit the architecture.
    """
    _require_known(model_type)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found; download it with `dataengine models download "
            f"{model_type}` or point --checkpoint at an existing file"
        )
    if sha256 is not None:
        got = file_sha256(path)
        if got.lower() != sha256.lower():
            raise ChecksumError(
                f"sha256 mismatch for {path}: expected {sha256}, got {got}. The file is corrupt "
                "or a different checkpoint; re-download it (`dataengine models download "
                f"{model_type}`) or pass the sha256 of the file you mean to use"
            )
    model = build_sam(model_type)
    _load_state(model, path, device)
    return model.to(device).eval()


def download(name: str, dest_dir: Path, progress: bool = True, url: str | None = None) -> Path:
    """Fetch ``MODELS[name]`` into ``dest_dir`` with a progress bar; verify sha256; return the path.

    Streams to a temporary file in ``dest_dir`` and renames it into place only after the
    hash matches, so an interrupted or corrupt download never leaves a usable-looking file.
    ``url`` overrides the registry URL (mirrors, tests with ``file://``).
    """
    _require_known(name)
    entry = MODELS[name]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry["filename"]
    expected = entry["sha256"]
    if target.is_file() and expected is not None and file_sha256(target) == expected:
        return target
    source = url or entry["url"]
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry['filename']}.", suffix=".part", dir=dest_dir)
    try:
        with urllib.request.urlopen(source, timeout=60) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            _stream(resp, out, digest, total, entry["filename"], progress)
        got = digest.hexdigest()
        if expected is not None and got != expected:
            raise ChecksumError(
                f"downloaded {source} has sha256 {got}, expected {expected}; the download is "
                "corrupt or the file changed upstream. Nothing was written; retry, or fetch it "
                "by hand and pass its sha256 explicitly"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _stream(resp: Any, out: Any, digest: Any, total: int | None, label: str, show: bool) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show) as bar:
        task = bar.add_task(label, total=total)
        while block := resp.read(1 << 20):
            out.write(block)
            digest.update(block)
            bar.advance(task, len(block))


def random_sam(
    model_type: str, seed: int = 0, logit_scale: float = 40.0, iou_offset: float = 0.0
) -> torch.nn.Module:
    """The real architecture with seeded random weights, for tests and benchmarks only.

    A freshly initialised decoder produces mask logits with std ~0.1, so every stability
    score (logits beyond +-1) would be 0. The last layer of each hypernetwork MLP is
    scaled by ``logit_scale`` so logits spread like a trained SAM's (std of a few units).
    ``iou_offset`` is added to the IoU head's output bias: fresh predictions sit around 0,
    and ``SamAutomaticMaskGenerator`` skips its IoU filter for thresholds <= 0, so a
    benchmark that wants that filter to run needs predictions above 0 (0.5 puts them where
    a trained SAM's are). Still just a set of weights, saved and loaded like any checkpoint.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_sam(model_type)
    finally:
        torch.random.set_rng_state(gen_state)
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(logit_scale)
            mlp.layers[-1].bias.mul_(logit_scale)
        model.mask_decoder.iou_prediction_head.layers[-1].bias.add_(iou_offset)
    return model.eval()
