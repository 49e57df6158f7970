"""The Segment Anything backend: checkpoints, the fast automatic mask generator and its CPU decoder paths."""
