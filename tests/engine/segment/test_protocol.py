"""Prompt validation shared by every backend, and ``decode_rle`` by way of ``decode``."""

from __future__ import annotations

import numpy as np
import pytest

from engine.masks import decode_rle
from engine.segment.protocol import (
    DecodeResult,
    Embedding,
    PromptError,
    decode_as_rle,
    validate_prompt,
)

SIZE = (100, 200)  # H, W


def test_valid_prompts_are_normalised() -> None:
    pts, lbl, box = validate_prompt(SIZE, [[10, 20], [199.5, 99]], [1, 0], None)
    assert pts.shape == (2, 2) and lbl.tolist() == [1, 0] and box is None
    pts, lbl, box = validate_prompt(SIZE, None, None, [0, 0, 200, 100])
    assert pts is None and box.tolist() == [0, 0, 200, 100]


@pytest.mark.parametrize(
    ("points", "labels", "box", "message"),
    [
        (None, None, None, "empty prompt"),
        ([[200, 5]], [1], None, "inside the image"),
        ([[-1, 5]], [1], None, "inside the image"),
        ([[5, 100]], [1], None, "inside the image"),
        ([[np.nan, 5]], [1], None, "NaN"),
        ([[5, 5]], None, None, "labels are required"),
        ([[5, 5]], [1, 0], None, "1 points but 2 labels"),
        ([[5, 5]], [2], None, "0 \\(negative\\) or 1"),
        ([[5, 5, 5]], [1], None, "N x 2"),
        (None, None, [10, 10, 5, 20], "x1 > x0"),
        (None, None, [0, 0, 201, 50], "inside the image"),
        (None, None, [0, 0, np.inf, 50], "NaN or infinity"),
        (None, None, [0, 0, 5], "4 numbers"),
    ],
)
def test_bad_prompts_raise(points, labels, box, message) -> None:  # noqa: ANN001
    with pytest.raises(PromptError, match=message):
        validate_prompt(SIZE, points, labels, box)


class _Half:
    """Decodes the left half of the image, whatever the prompt."""

    def decode(self, embedding: Embedding, *args: object) -> DecodeResult:
        h, w = embedding.image_size
        mask = np.zeros((h, w), np.uint8)
        mask[:, : w // 2] = 1
        return DecodeResult(mask, 0.75, logits=np.ones(3, np.float32))


def test_decode_as_rle_is_the_rle_of_decode() -> None:
    emb = Embedding("half", SIZE, {})
    rle, score, logits = decode_as_rle(_Half(), emb, np.array([[5.0, 5.0]]), np.array([1]))
    mask = decode_rle(rle)
    assert rle["size"] == list(SIZE) and isinstance(rle["counts"], str)
    assert mask.dtype == bool and mask[:, :100].all() and not mask[:, 100:].any()
    assert score == 0.75 and logits.tolist() == [1, 1, 1]
