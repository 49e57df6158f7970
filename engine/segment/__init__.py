"""Segmentation: the segmenter protocol, backend registry, embedding cache, precompute, and the `classical` and `sam` backends."""
