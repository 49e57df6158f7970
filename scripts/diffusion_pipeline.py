"""Loading diffusion checkpoints as people ship them, and the dtype plan for training.

Used by ``scripts/finetune_diffusion.py`` (see its docstring for the layouts):
diffusers folders of ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``, folders
holding only a weights variant (``*.fp16.safetensors``), and single-file checkpoints
(``.safetensors`` / ``.ckpt``, original SD layout) through ``from_single_file`` with a local
``config`` folder. torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOT_DOWNLOADED = "nothing is downloaded: pass a local diffusers folder with model_index.json"
SINGLE_FILE = (".safetensors", ".ckpt")
PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")


def pipeline_class_name(folder: Path) -> str:
    """The pipeline class a diffusers folder declares (``model_index.json`` ``_class_name``)."""
    name = json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    if name not in PIPELINES:
        raise SystemExit(
            f"{folder}: {name!r} pipelines are not supported; use one of {', '.join(PIPELINES)}"
        )
    return str(name)


def detect_variant(folder: Path, requested: str = "auto") -> str | None:
    """The weights variant to load from a diffusers folder: None for plain weights.

    ``auto``: plain weights when ``unet/`` has them, else the single variant present
    (``diffusion_pytorch_model.<variant>.safetensors``); several variants -> an error
    naming them. ``none`` forces plain weights; any other value is used as given.
    """
    if requested == "none":
        return None
    if requested != "auto":
        return requested
    unet = folder / "unet"
    stem = "diffusion_pytorch_model"
    plain = [f"{stem}.safetensors", f"{stem}.bin", f"{stem}.safetensors.index.json"]
    if any((unet / n).is_file() for n in plain):
        return None
    found = sorted(
        {p.name[len(stem) + 1 :].split(".")[0].split("-")[0] for p in unet.glob(f"{stem}.*.*")}
        - {"safetensors", "bin"}
    )
    if len(found) > 1:
        raise SystemExit(f"{unet} holds the variants {', '.join(found)}: choose one with --variant")
    return found[0] if found else None


@dataclass(frozen=True)
class DtypePlan:
    """Which dtype each part trains/infers in (see the module doc)."""

    compute: Any  # torch.dtype of the frozen UNet / text encoder(s) and the activations
    vae: Any  # the VAE's dtype: compute, or fp32 for an fp16-unsafe SDXL VAE
    autocast: Any  # dtype for torch.autocast on CUDA, or None
    notes: tuple[str, ...]


def dtype_plan(mixed_precision: str, device: str, *, sdxl_vae_upcast: bool = False) -> DtypePlan:
    """The dtypes for ``--mixed-precision`` on ``device`` (LoRA weights are always fp32):
    ``no`` fp32; ``fp16`` fp16 on CUDA, fp32 on CPU (noted); ``bf16`` bf16 everywhere."""
    import torch

    wanted = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]
    notes: list[str] = []
    cuda = device.startswith("cuda")
    compute = wanted
    if wanted == torch.float16 and not cuda:
        compute = torch.float32
        notes.append(
            "fp16 compute is not supported for every operation on CPU: upcasting the frozen "
            "weights and the compute to fp32 (use --mixed-precision bf16 for 16-bit on CPU)"
        )
    vae = compute
    if compute == torch.float16 and sdxl_vae_upcast:
        vae = torch.float32
        notes.append("the SDXL VAE overflows in fp16 (force_upcast): it stays fp32")
    autocast = compute if cuda and compute != torch.float32 else None
    return DtypePlan(compute=compute, vae=vae, autocast=autocast, notes=tuple(notes))


def load_pipeline(
    base: Path,
    device: str,
    *,
    config: Path | None = None,
    variant: str = "auto",
    dtype: Any = None,
) -> Any:
    """The SD / SDXL pipeline of ``base`` (folder or single file), weights in ``dtype``
    (default fp32, whatever dtype they were saved in), on ``device``."""
    import diffusers
    import torch

    dtype = dtype or torch.float32
    folder = config if base.is_file() else base
    if folder is None:
        raise SystemExit(f"{base} is a single file: pass --config DIR; {NOT_DOWNLOADED}")
    cls = getattr(diffusers, pipeline_class_name(folder))
    extra: dict[str, Any] = {}
    if cls.__name__ == "StableDiffusionPipeline":
        extra = {"safety_checker": None, "requires_safety_checker": False}
    if base.is_file():
        pipe = cls.from_single_file(
            str(base), config=str(config), local_files_only=True, dtype=dtype, **extra
        )
    else:
        pipe = cls.from_pretrained(
            base, local_files_only=True, variant=detect_variant(base, variant),
            dtype=dtype, **extra,
        )  # fmt: skip
    return pipe.to(device)


def is_sdxl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def encode_captions(pipe: Any, captions: list[str], device: str) -> tuple[Any, Any]:
    """(prompt embeds (B, L, D), pooled text embeds (B, P) for SDXL else None).

    SD: the text encoder's last hidden state. SDXL: both encoders' penultimate hidden
    states concatenated on D, and the second encoder's projected pooled output.
    """
    import torch

    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if is_sdxl(pipe):
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    states, pooled = [], None
    for tokenizer, encoder in pairs:
        ids = tokenizer(
            captions, padding="max_length", truncation=True,
            max_length=tokenizer.model_max_length, return_tensors="pt",
        ).input_ids.to(device)  # fmt: skip
        if not is_sdxl(pipe):
            return encoder(ids)[0], None
        out = encoder(ids, output_hidden_states=True)
        pooled = out[0]  # the last encoder's pooled, projected embedding
        states.append(out.hidden_states[-2])
    return torch.cat(states, dim=-1), pooled
