"""Perceptual hash of an image (64-bit DCT hash as 16 hex characters) and the bit distance
between two hashes (near-duplicates: ``engine.curation.duplicates``)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn


def phash(img: Image.Image | np.ndarray, hash_size: int = 8, highfreq: int = 4) -> str:
    """DCT perceptual hash (64 bits as 16 hex chars) of an RGB image."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    n = hash_size * highfreq
    grey = np.asarray(img.convert("L").resize((n, n), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(grey, norm="ortho")[:hash_size, :hash_size]
    bits = (low > np.median(low)).flatten()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:0{hash_size * hash_size // 4}x}"


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
