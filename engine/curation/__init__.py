"""Curation for diffusion fine-tuning (``docs/architecture.md``).

Stage auto: ``signals`` (per-image quality numbers), ``duplicates`` (perceptual-hash
clusters), ``composition`` (from accepted masks), ``rules`` (pass/fail with reasons),
``aesthetic`` (optional LAION heads over CLIP embeddings). Human stages are served by
``db.curation``; ``ranker`` orders their queues, ``agreement`` measures them and
``captions`` drafts the text a specialist then writes.
"""
