"""Tiny random SD / SDXL pipelines saved in the layouts people ship (tests only).

- :func:`build_tiny_sd` / :func:`build_tiny_sdxl`: diffusers folders (``variant="fp16"``
  saves only ``*.fp16.safetensors`` weights, in fp16);
- :func:`save_single_file`: an SD 1.x pipeline as one original-layout (LDM/CompVis keys)
  ``.safetensors``, the inverse of diffusers' ``convert_ldm_*_checkpoint`` (diffusers
  ships no writer for this layout), generalised to any block count / layers per block.
Nothing is downloaded: the CLIP tokenizers' vocab/merges are written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def byte_chars() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table: 256 printable characters, one per byte."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def write_tokenizer(folder: Path) -> int:
    """A byte-level CLIP BPE vocabulary with no merges (every character is a token)."""
    chars = byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


def _tokenizer_and_config(folder: Path) -> tuple[Any, dict[str, Any]]:
    from transformers import CLIPTokenizer

    tok_dir = folder.parent / f"{folder.name}-tok"
    n_vocab = write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=16)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    cfg = dict(
        vocab_size=n_vocab, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=16, bos_token_id=eos - 1,
        eos_token_id=eos, pad_token_id=eos,
    )  # fmt: skip
    return tokenizer, cfg


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )  # fmt: skip


def _scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        steps_offset=1, set_alpha_to_one=False,
    )  # fmt: skip


def build_tiny_sd(folder: Path, *, variant: str | None = None) -> Any:
    """A tiny random SD 1.x pipeline saved to ``folder``; returns it (fp32, in memory)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer, cfg = _tokenizer_and_config(folder)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        unet=unet, vae=_vae(), text_encoder=CLIPTextModel(CLIPTextConfig(**cfg)),
        tokenizer=tokenizer, scheduler=_scheduler(), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    _save(pipe, folder, variant)
    return pipe


def build_tiny_sdxl(folder: Path, *, variant: str | None = None) -> Any:
    """A tiny random SDXL pipeline (two text encoders, text_time conditioning)."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer, cfg = _tokenizer_and_config(folder)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=8 * 6 + 32, cross_attention_dim=64,
    )  # fmt: skip
    pipe = StableDiffusionXLPipeline(
        unet=unet, vae=_vae(), text_encoder=CLIPTextModel(CLIPTextConfig(**cfg)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**cfg, projection_dim=32)),
        tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=_scheduler(),
    )  # fmt: skip
    _save(pipe, folder, variant)
    return pipe


def _save(pipe: Any, folder: Path, variant: str | None) -> None:
    import copy

    import torch

    if variant == "fp16":
        pipe = copy.deepcopy(pipe).to(torch.float16)
    pipe.save_pretrained(folder, variant=variant)


# --- original (LDM) single-file layout ----------------------------------------------------


def _unet_to_ldm(sd: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    n = len(config["block_out_channels"])
    lpb = config["layers_per_block"]
    up_types = config["up_block_types"]
    pairs = [  # (LDM, diffusers) prefixes, after the resnet-internal renames
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("middle_block.1.", "mid_block.attentions.0."),
    ]
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    for i in range(n):
        for j in range(lpb):
            pairs.append(
                (f"input_blocks.{(lpb + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}.")
            )
            pairs.append(
                (f"input_blocks.{(lpb + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}.")
            )
        for j in range(lpb + 1):
            pairs.append((f"output_blocks.{(lpb + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            pairs.append(
                (f"output_blocks.{(lpb + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}.")
            )
        if i < n - 1:
            pairs.append(
                (
                    f"input_blocks.{(lpb + 1) * (i + 1)}.0.op.",
                    f"down_blocks.{i}.downsamplers.0.conv.",
                )
            )
            at = 2 if up_types[i].startswith("CrossAttn") else 1
            pairs.append((f"output_blocks.{(lpb + 1) * i + lpb}.{at}.conv.", f"up_blocks.{i}.upsamplers.0.conv."))  # fmt: skip
    resnet = [
        ("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
        ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"),
        ("skip_connection", "conv_shortcut"),
    ]  # fmt: skip
    out = {}
    for key, value in sd.items():
        new = key
        if "resnets" in key:
            for ldm, hf in resnet:
                new = new.replace(hf, ldm)
        for ldm, hf in pairs:
            if new.startswith(hf):
                new = ldm + new[len(hf) :]
                break
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_ldm(sd: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    n = len(config["block_out_channels"])
    lpb = config["layers_per_block"]
    pairs = [("encoder.mid.attn_1.", "encoder.mid_block.attentions.0."),
             ("decoder.mid.attn_1.", "decoder.mid_block.attentions.0.")]  # fmt: skip
    for part in ("encoder", "decoder"):
        for j in range(2):
            pairs.append((f"{part}.mid.block_{j + 1}.", f"{part}.mid_block.resnets.{j}."))
        pairs.append((f"{part}.norm_out.", f"{part}.conv_norm_out."))
    for i in range(n):
        for j in range(lpb):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        for j in range(lpb + 1):
            pairs.append(
                (f"decoder.up.{n - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
            )
        if i < n - 1:
            pairs.append(
                (f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0.")
            )
            pairs.append((f"decoder.up.{n - 1 - i}.upsample.", f"decoder.up_blocks.{i}.upsamplers.0."))  # fmt: skip
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."),
            ("proj_out.", "to_out.0.")]  # fmt: skip
    out = {}
    for key, value in sd.items():
        new = key
        for ldm, hf in pairs:
            if new.startswith(hf):
                new = ldm + new[len(hf) :]
                break
        new = new.replace("conv_shortcut", "nin_shortcut")
        if ".mid.attn_1." in new:
            head, tail = new.split(".mid.attn_1.")
            for ldm, hf in attn:
                if tail.startswith(hf):
                    tail = ldm + tail[len(hf) :]
                    break
            new = f"{head}.mid.attn_1.{tail}"
            if value.ndim == 2:  # linear -> 1x1 conv, as in LDM
                value = value.reshape(*value.shape, 1, 1)
        out["first_stage_model." + new] = value
    return out


def save_single_file(pipe: Any, path: Path) -> None:
    """Write an SD 1.x pipeline as one original-layout ``.safetensors`` checkpoint."""
    from safetensors.torch import save_file

    sd: dict[str, Any] = {}
    sd |= _unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))
    sd |= _vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config))
    for key, value in pipe.text_encoder.state_dict().items():
        # original checkpoints nest CLIP under text_model. (transformers >= 5.6 flattened it)
        key = key if key.startswith("text_model.") else "text_model." + key
        sd["cond_stage_model.transformer." + key] = value
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
