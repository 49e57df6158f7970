"""The model side of the data engine. Knows nothing of HTTP.

``segment/`` segmentation backends and their caches, ``flywheel/`` events, effort, metrics,
pre-fill and model rounds, ``curation/`` image selection for fine-tuning sets, ``interop/``
formats of other tools; ``masks``, ``imageio``, ``walk`` and ``ingest`` are small shared modules.
"""
