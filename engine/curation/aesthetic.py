"""Learned aesthetic score: LAION / SAC predictor heads over CLIP image embeddings.

Heads (torch state dicts, loaded with ``weights_only=True``; see ../shared/data/README.md):
- ``laion-linear``: LAION aesthetic v1, ``nn.Linear(d, 1)`` (keys ``weight``, ``bias``);
  input the L2-normalised CLIP embedding.
- ``laion-mlp``: LAION improved aesthetic predictor, 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with
  no activations (keys ``layers.{0,2,4,6,7}.*``); input the L2-normalised ViT-L/14 embedding.
- ``sac-linear``: simulacra aesthetic linear head (keys ``linear.*``); input
  ``normalize(emb) * sqrt(d)``.
All output roughly 1..10. The kind is recognised from the state dict's keys.

Embeddings are (N, d) float arrays from CLIP's image tower. ``ClipEncoder`` makes them
with open_clip when the user has installed open_clip and has CLIP weights on disk; it
never downloads (no CLIP weights exist on these machines: the heads are tested on the
stored reference embeddings instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("laion-linear", "laion-mlp", "sac-linear")


@dataclass(frozen=True)
class AestheticHead:
    """A loaded head: ``layers`` are (weight (out, in), bias (out,)) float64 pairs, no activations."""

    kind: str
    dim: int
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) float64 aesthetic scores of (N, d) CLIP image embeddings (a (d,) vector works too)."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"{self.kind} head expects (N, {self.dim}) embeddings, got {tuple(x.shape)}; "
                "use the head that matches your CLIP model (B/32, B/16: 512-d, L/14: 768-d)"
            )
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norm, 1e-12)
        if self.kind == "sac-linear":
            x = x * np.sqrt(self.dim)
        for w, b in self.layers:
            x = x @ w.T + b
        return x[:, 0]


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def head_from_state_dict(sd: dict[str, Any], *, source: str = "<state dict>") -> AestheticHead:
    """Recognise and build a head from a torch state dict (tensors)."""
    keys = set(sd)
    if keys == {"weight", "bias"}:
        kind, names = "laion-linear", [("weight", "bias")]
    elif keys == {"linear.weight", "linear.bias"}:
        kind, names = "sac-linear", [("linear.weight", "linear.bias")]
    elif keys == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}:
        kind = "laion-mlp"
        names = [(f"layers.{i}.weight", f"layers.{i}.bias") for i in (0, 2, 4, 6, 7)]
    else:
        raise ValueError(
            f"{source}: not a known aesthetic head (keys {sorted(keys)[:6]}); expected one of "
            f"{', '.join(KINDS)} (see engine/curation/aesthetic.py)"
        )
    layers = tuple((_np(sd[w]), _np(sd[b])) for w, b in names)
    return AestheticHead(kind=kind, dim=int(layers[0][0].shape[1]), layers=layers)


def load_head(path: str | Path) -> AestheticHead:
    """Load a head from a ``.pth`` state dict file (never executes pickled code)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"aesthetic head {p} not found; point --aesthetic-head at a .pth file"
        )
    sd = torch.load(p, map_location="cpu", weights_only=True)
    return head_from_state_dict(sd, source=str(p))


class ClipEncoder:
    """CLIP image embeddings through open_clip, from a local weights file only.

    ``ClipEncoder("ViT-L-14", Path("ViT-L-14.pt"))``; ``encode([rgb, ...])`` -> (N, d) float32
    L2-normalised. Build it once per job (it loads the model).
    """

    def __init__(self, model_name: str, weights: str | Path, device: str = "cpu") -> None:
        try:
            import open_clip  # optional dependency
        except ImportError as err:
            raise RuntimeError(
                "the aesthetic score needs open_clip: `pip install open_clip_torch`, and CLIP "
                "weights on disk (this tool never downloads them)"
            ) from err
        w = Path(weights)
        if not w.is_file():
            raise FileNotFoundError(
                f"CLIP weights {w} not found; download them once and pass the path"
            )
        import torch

        self._torch = torch
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(w))
        self.model = model.eval().to(device)
        self.preprocess = preprocess
        self.device = device

    def encode(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, d) float32 L2-normalised embeddings of HWC uint8 RGB images."""
        from PIL import Image

        torch = self._torch
        batch = torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        with torch.no_grad():
            emb = self.model.encode_image(batch).float()
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return emb.cpu().numpy()
