"""Synthetic degradations used to check the quality signals and to evaluate the ranker.

All take and return HWC uint8 RGB arrays; they are deterministic for a given ``seed``.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from engine.imageio import load_rgb


def gaussian_blur(rgb: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma)


def exposure(rgb: np.ndarray, ev: float) -> np.ndarray:
    """Change exposure by ``ev`` stops in linear light (sRGB decode, x 2**ev, clip, encode)."""
    f = rgb.astype(np.float64) / 255.0
    lin = np.where(f <= 0.04045, f / 12.92, ((f + 0.055) / 1.055) ** 2.4)
    lin = np.clip(lin * (2.0**ev), 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(rgb: np.ndarray, sigma: float = 12.0, seed: int = 0) -> np.ndarray:
    """Add i.i.d. Gaussian noise of ``sigma`` (0..255 units) per channel."""
    rng = np.random.default_rng(seed)
    noisy = rgb.astype(np.float64) + rng.normal(0.0, sigma, rgb.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int = 10) -> np.ndarray:
    """Re-encode as JPEG at ``quality`` and decode again."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return load_rgb(buf)


def resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` (area when shrinking, cubic when growing)."""
    h, w = rgb.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, size, interpolation=interp)


# name -> function of (rgb, seed); the four degradations (exposure both ways).
DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "blur": lambda rgb, seed: gaussian_blur(rgb, 2.0),
    "exposure+2": lambda rgb, seed: exposure(rgb, 2.0),
    "exposure-2": lambda rgb, seed: exposure(rgb, -2.0),
    "noise": lambda rgb, seed: gaussian_noise(rgb, 12.0, seed),
    "jpeg10": lambda rgb, seed: jpeg(rgb, 10),
}
