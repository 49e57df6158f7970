"""LoRA fine-tuning on a 4-image curated export with a tiny, randomly initialised SD pipeline.

Nothing is downloaded: the UNet, VAE and CLIP text encoder are built from small configs and
the CLIP tokenizer's vocab.json / merges.txt are written by the test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from db.projects import get_project
from db.session import make_engine, make_session_factory, transaction
from engine.interop.exporters.atomic import write_atomically
from engine.interop.exporters.hf_imagefolder import export_hf_imagefolder
from tests.curation_helpers import curated_project

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


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
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


def build_tiny_pipeline(folder: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok_dir = folder.parent / "tok"
    n_vocab = write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=16)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=n_vocab, hidden_size=32, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, max_position_embeddings=16, bos_token_id=eos - 1,
            eos_token_id=eos, pad_token_id=eos,
        )
    )  # fmt: skip
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder)


@pytest.mark.slow
def test_lora_finetune_two_steps_and_generate(
    sqlite_url: str, shared_data: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from scripts.finetune_diffusion import main

    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    with transaction(factory) as s:
        name = curated_project(s, shared_data, n=6)["project"].name
    export = tmp_path / "export"
    with transaction(factory) as s:
        p = get_project(s, name=name)
        counts, _ = write_atomically(
            export, lambda tmp: export_hf_imagefolder(s, project=p, out=tmp, stage=None, options={})
        )
    engine.dispose()
    assert counts["images"] == 4
    base = tmp_path / "tiny-sd"
    build_tiny_pipeline(base)
    out = tmp_path / "lora"
    rc = main(
        ["--data", str(export), "--base", str(base), "--out", str(out), "--resolution", "32",
         "--max-steps", "2", "--batch-size", "2", "--grad-accum", "2", "--lr", "1e-2",
         "--rank", "4", "--device", "cpu", "--sample-prompt", "a photo of a dog",
         "--sample-steps", "2", "--sample-size", "32"]
    )  # fmt: skip
    assert rc == 0
    weights = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert weights and all(k.startswith("unet.") for k in weights)
    ups = [v for k, v in weights.items() if "lora_B" in k or "lora.up" in k]
    assert ups and any(float(v.abs().max()) > 0 for v in ups)  # trained: B left zero-init
    summary = json.loads((out / "training_args.json").read_text())
    assert (
        summary["steps"] == 2 and summary["images"] == 4 and summary["args"]["noise_offset"] == 0.1
    )

    from PIL import Image

    with Image.open(out / "sample.png") as im:
        assert im.size == (32, 32)

    # Loading the LoRA changes the model's output (same seed, same prompt).
    import torch

    from scripts.finetune_diffusion import load_pipeline

    pipe = load_pipeline(base, "cpu")

    def run() -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return pipe(
            "a photo of a dog",
            num_inference_steps=2,
            height=32,
            width=32,
            generator=g,
            output_type="pt",
        ).images

    before = run()
    pipe.load_lora_weights(out)
    after = run()
    assert before.shape == after.shape == (1, 3, 32, 32)
    assert not torch.allclose(before, after)
