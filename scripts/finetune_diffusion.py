"""LoRA fine-tuning of a Stable-Diffusion-style model on a curated export (diffusers + peft).

Reads an ``hf-imagefolder`` export (``train/metadata.jsonl``) or a ``kohya`` export
(``dataset_config.toml`` + ``.txt`` captions), trains LoRA adapters on the UNet's attention
projections, saves them with ``save_lora_weights`` (``pytorch_lora_weights.safetensors``)
and, with ``--sample-prompt``, reloads them into a fresh pipeline and generates a sample.

Emu-style quality-tuning defaults (Dai et al. 2023, "Emu: Enhancing Image Generation
Models Using Photogenic Needles in a Haystack"): a small, very high quality set (~2,000
images) is fine-tuned for a bounded number of steps with a small learning rate, with
**noise offset 0.1** (lets the model reach very dark / bright images) and a large
effective batch (Emu: 64) reached here with **gradient accumulation**. Emu stopped early
(<= 15k steps at batch 64) because longer training overfits; ``--max-steps`` bounds it.

    .venv/bin/python scripts/finetune_diffusion.py --data EXPORT --base SD_DIR --out LORA_DIR

Checkpoint layouts (nothing is ever downloaded):

- a diffusers folder (``model_index.json``) of a ``StableDiffusionPipeline`` or a
  ``StableDiffusionXLPipeline`` (SDXL: both text encoders, pooled text embeds and the
  ``time_ids`` added conditioning);
- a folder holding only a weights variant (``*.fp16.safetensors``): the variant is found
  and used (or name it with ``--variant``);
- a single-file checkpoint (``.safetensors`` / ``.ckpt``, the original SD layout) loaded
  with diffusers' ``from_single_file``; ``--config`` names a local diffusers folder with
  the matching configs and tokenizer(s).

dtype plan (``--mixed-precision no|fp16|bf16``): trainable LoRA weights are always fp32;
the frozen UNet, text encoder(s) and VAE are cast to the compute dtype (fp32 for ``no``,
whatever dtype the checkpoint was saved in). fp16 compute is not supported for every
operation on CPU, so ``fp16`` on CPU is upcast to fp32 (logged); ``bf16`` runs on both.
On CUDA the forward pass also runs under autocast (fp16 with a gradient scaler). With
fp16, an SDXL VAE whose config asks for ``force_upcast`` stays fp32 (it overflows in fp16).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from scripts.diffusion_dataset import read_export
from scripts.diffusion_pipeline import (
    DtypePlan,
    detect_variant,
    dtype_plan,
    encode_captions,
    is_sdxl,
    load_pipeline,
    pipeline_class_name,
)
from scripts.finetune_diffusion_args import parse_args

__all__ = [
    "DtypePlan", "detect_variant", "dtype_plan", "encode_captions", "is_sdxl",
    "load_pipeline", "main", "parse_args", "pipeline_class_name", "read_export", "train",
]  # fmt: skip


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and save the LoRA; returns a summary (steps, final loss, dtypes, files)."""
    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812
    from diffusers import DDPMScheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from PIL import Image
    from rich.progress import Progress

    from engine.imageio import open_image

    pairs = read_export(args.data)
    if not pairs:
        raise SystemExit(f"{args.data} has no images")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    plan = dtype_plan(args.mixed_precision, args.device)
    pipe = load_pipeline(
        args.base, args.device, config=args.config, variant=args.variant, dtype=plan.compute
    )
    sdxl = is_sdxl(pipe)
    if sdxl and bool(getattr(pipe.vae.config, "force_upcast", False)):
        plan = dtype_plan(args.mixed_precision, args.device, sdxl_vae_upcast=True)
    for note in plan.notes:
        print(f"dtype plan: {note}", file=sys.stderr)
    unet, vae = pipe.unet, pipe.vae.to(dtype=plan.vae)
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if sdxl else [])
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    for module in (unet, vae, *encoders):
        module.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                   target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    )  # fmt: skip
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:  # trainable weights are fp32 whatever the frozen ones are
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    scaler = torch.amp.GradScaler("cuda") if plan.autocast == torch.float16 else None

    def load(path: Path) -> tuple[torch.Tensor, list[int]]:
        """(CHW float in [-1, 1], SDXL time ids [orig h, orig w, crop top, crop left, h, w])."""
        with open_image(path) as src:  # the checked open (format allowlist, pixel limit)
            im = src.convert("RGB")
            w0, h0 = im.size
            s = args.resolution / min(w0, h0)
            im = im.resize(
                (max(args.resolution, round(w0 * s)), max(args.resolution, round(h0 * s))),
                Image.Resampling.BICUBIC,
            )
            w, h = im.size
            if args.center_crop:
                left, top = (w - args.resolution) // 2, (h - args.resolution) // 2
            else:
                left, top = (
                    int(rng.integers(0, w - args.resolution + 1)),
                    int(rng.integers(0, h - args.resolution + 1)),
                )
            im = im.crop((left, top, left + args.resolution, top + args.resolution))
            if args.random_flip and rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
        return a.permute(2, 0, 1), [h0, w0, top, left, args.resolution, args.resolution]

    def autocast() -> Any:
        if plan.autocast is None:
            from contextlib import nullcontext

            return nullcontext()
        return torch.autocast(args.device.split(":")[0], dtype=plan.autocast)

    unet.train()
    losses: list[float] = []
    order: list[int] = []
    with Progress() as prog:
        task = prog.add_task("LoRA steps", total=args.max_steps)
        for _step in range(args.max_steps):
            optimizer.zero_grad(set_to_none=True)
            accum = 0.0
            for _micro in range(args.grad_accum):
                if len(order) < args.batch_size:
                    order += rng.permutation(len(pairs)).tolist()
                batch, order = order[: args.batch_size], order[args.batch_size :]
                loaded = [load(pairs[i][0]) for i in batch]
                pixels = torch.stack([x for x, _ in loaded]).to(args.device, dtype=plan.vae)
                with torch.no_grad():
                    latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
                    latents = latents.to(plan.compute)
                    hidden, pooled = encode_captions(
                        pipe, [pairs[i][1] for i in batch], args.device
                    )
                added = None
                if sdxl:
                    time_ids = torch.tensor([t for _, t in loaded], device=args.device)
                    added = {"text_embeds": pooled.to(plan.compute),
                             "time_ids": time_ids.to(plan.compute)}  # fmt: skip
                noise = torch.randn_like(latents)
                if args.noise_offset:
                    noise = noise + args.noise_offset * torch.randn(
                        latents.shape[0], latents.shape[1], 1, 1,
                        device=latents.device, dtype=latents.dtype,
                    )  # fmt: skip
                t = torch.randint(
                    0,
                    noise_scheduler.config.num_train_timesteps,
                    (latents.shape[0],),
                    device=latents.device,
                )
                noisy = noise_scheduler.add_noise(latents, noise, t)
                if noise_scheduler.config.prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(latents, noise, t)
                else:
                    target = noise
                with autocast():
                    pred = unet(noisy, t, hidden.to(plan.compute), added_cond_kwargs=added).sample
                loss = F.mse_loss(pred.float(), target.float()) / args.grad_accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
                accum += float(loss.detach())
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            losses.append(accum)
            prog.update(task, advance=1, description=f"LoRA steps (loss {accum:.4f})")
    if not all(math.isfinite(x) for x in losses):
        raise SystemExit("training diverged (non-finite loss); lower --lr")
    args.out.mkdir(parents=True, exist_ok=True)
    lora = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    type(pipe).save_lora_weights(
        save_directory=args.out, unet_lora_layers=lora, safe_serialization=True
    )
    summary = {
        "images": len(pairs),
        "steps": args.max_steps,
        "effective_batch": args.batch_size * args.grad_accum,
        "final_loss": losses[-1],
        "losses": losses,
        "lora_tensors": len(lora),
        "pipeline": type(pipe).__name__,
        "dtypes": {
            "compute": str(plan.compute).removeprefix("torch."),
            "vae": str(plan.vae).removeprefix("torch."),
            "trainable": str(params[0].dtype).removeprefix("torch."),
            "autocast": str(plan.autocast).removeprefix("torch.") if plan.autocast else None,
            "notes": list(plan.notes),
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(args).items())},
    }
    (args.out / "training_args.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n"
    )
    return summary


def sample(args: argparse.Namespace) -> Path:
    """Reload the base model, load the saved LoRA and generate ``--sample-prompt``."""
    import torch

    plan = dtype_plan(args.mixed_precision, args.device)
    pipe = load_pipeline(
        args.base, args.device, config=args.config, variant=args.variant, dtype=plan.compute
    )
    pipe.load_lora_weights(args.out)
    size = args.sample_size or None
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    image = pipe(
        args.sample_prompt,
        num_inference_steps=args.sample_steps,
        height=size,
        width=size,
        generator=g,
    ).images[0]
    path = args.out / "sample.png"
    image.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = train(args)
    print(
        f"trained {summary['steps']} steps on {summary['images']} images (effective batch {summary['effective_batch']}), final loss {summary['final_loss']:.4f}"
    )
    print(f"LoRA weights: {args.out / 'pytorch_lora_weights.safetensors'}")
    if args.sample_prompt:
        print(f"sample: {sample(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
