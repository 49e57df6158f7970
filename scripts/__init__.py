"""The `dataengine` command line and standalone benchmark / evaluation scripts."""
