"""The flywheel: event kinds, effort, metrics, pre-fill, calibration, decoder fine-tuning, clicker, report."""
