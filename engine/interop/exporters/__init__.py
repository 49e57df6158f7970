"""Exporters: COCO, SA-1B, Label Studio, Hugging Face imagefolder, kohya. See atomic.py."""
