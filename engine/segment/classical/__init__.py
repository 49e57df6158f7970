"""The weight-free classical backend: per-image features as the embedding, graph-cut prompts, proposals."""
