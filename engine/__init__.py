"""The model side of the data engine: backends, caches, pre-fill, codecs, metrics, curation.

Knows nothing of HTTP.
"""
