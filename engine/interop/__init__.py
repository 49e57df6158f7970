"""Interoperability: the Label Studio codec, importers and exporters."""
