"""Flywheel step 2: fine-tune SAM's mask decoder on the project's final masks.

Image embeddings are computed once per image with the frozen image encoder (1x256x64x64
fp32, kept in memory for the run); each step samples an image, one of its final masks and a
prompt (its box with jitter, or 1-3 positive points inside it plus optionally a negative one
outside), decodes with ``multimask_output=False`` and minimises SAM's loss (20 x focal + dice
on the 256x256 low-res mask logits against the resized, padded final mask, + MSE of the predicted IoU).

Promotion: images are split (seeded) into train / held-out; the RITM clicker
(``engine.flywheel.clicker.run_clicks``) measures NoC@85 and mIoU@1 on the held-out masks before and
after. The child model version is registered either way (checkpoint under ``models_dir``,
sha256 recorded) but ``promoted`` only if the evaluation improves: mIoU@1 higher and NoC@85
not higher, or NoC@85 lower and mIoU@1 not lower.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput, NotFound
from db.model_versions import add_model_version, find_model_version
from db.rounds import current_round
from db.session import transaction
from db.training_data import accepted_mask_rles
from engine.flywheel.clicker import noc, run_clicks
from engine.imageio import load_rgb
from engine.masks import decode_rle
from engine.segment.embedding_cache import EmbeddingCache
from engine.segment.protocol import DecodeResult, Embedding
from engine.segment.sam.models import file_sha256, load_checkpoint


@dataclass
class FinetuneConfig:
    steps: int = 200
    lr: float = 1e-4
    holdout: float = 0.2
    max_images: int | None = None
    max_eval_masks: int = 50
    eval_clicks: int = 20
    noc_iou: float = 0.85
    box_fraction: float = 0.5
    seed: int = 0


class TorchSam:
    """A minimal segmenter over a SAM module (the clicker's ``decode`` interface).

    Points are (x, y) pixels of the original image; masks come back at full resolution.
    """

    name = "sam"

    def __init__(self, sam: torch.nn.Module, device: str = "cpu") -> None:
        from segment_anything.utils.transforms import ResizeLongestSide

        self.sam, self.device = sam, device
        self.model_key = "finetune"
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        """HWC uint8 RGB -> Embedding: ``features["emb"]`` 1x256x64x64 float32 numpy,
        ``features["input_size"]`` [h, w] of the resized image inside the 1024 frame."""
        inp = self.transform.apply_image(image)
        t = torch.as_tensor(inp, device=self.device).permute(2, 0, 1)[None].float()
        emb = self.sam.image_encoder(self.sam.preprocess(t)).cpu().numpy()
        feats = {"emb": emb, "input_size": [int(inp.shape[0]), int(inp.shape[1])]}
        return Embedding(self.model_key, tuple(image.shape[:2]), feats)

    def forward(
        self,
        embedding: Embedding,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None = None,
        mask_input: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(full-res logits 1x1xHxW, low-res logits 1x1x256x256, predicted IoU 1x1)."""
        size = embedding.image_size
        pts = None
        if points is not None and len(points):
            c = self.transform.apply_coords(np.asarray(points, dtype=np.float64), size)
            pts = (torch.as_tensor(c, dtype=torch.float32, device=self.device)[None],
                   torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None])  # fmt: skip
        boxes = None
        if box is not None:
            b = self.transform.apply_boxes(np.asarray(box, dtype=np.float64)[None], size)
            boxes = torch.as_tensor(b, dtype=torch.float32, device=self.device)
        masks = None
        if mask_input is not None:
            masks = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32, device=self.device)
            masks = masks.reshape(1, 1, *masks.shape[-2:])
        sparse, dense = self.sam.prompt_encoder(points=pts, boxes=boxes, masks=masks)
        low, iou = self.sam.mask_decoder(
            image_embeddings=torch.as_tensor(
                np.asarray(embedding.features["emb"], dtype=np.float32), device=self.device
            ),
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        full = self.sam.postprocess_masks(low, tuple(embedding.features["input_size"]), size)
        return full, low, iou

    @torch.no_grad()
    def decode(self, embedding: Embedding, points: Any = None, labels: Any = None,
               box: Any = None, mask_input: Any = None) -> DecodeResult:  # fmt: skip
        full, low, iou = self.forward(embedding, points, labels, box, mask_input)
        return DecodeResult(mask=(full[0, 0] > 0).cpu().numpy(), score=float(iou[0, 0]),
                            logits=low[0].cpu().numpy())  # fmt: skip


def sam_loss(logits: torch.Tensor, gt: torch.Tensor, iou_pred: torch.Tensor) -> torch.Tensor:
    """20 x sigmoid focal + dice on HxW logits vs bool gt, + MSE(predicted IoU, actual IoU)."""
    gt = gt.float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    pt = p * gt + (1 - p) * (1 - gt)
    focal = (0.25 * gt + 0.75 * (1 - gt)) * ce * (1 - pt) ** 2
    dice = 1 - (2 * (p * gt).sum() + 1) / (p.sum() + gt.sum() + 1)
    with torch.no_grad():
        hard = logits > 0
        inter = (hard & (gt > 0.5)).sum().float()
        union = (hard | (gt > 0.5)).sum().float()
        iou = inter / union.clamp(min=1)
    return 20 * focal.mean() + dice + F.mse_loss(iou_pred.reshape(()), iou)


def low_res_target(seg: TorchSam, mask: np.ndarray, input_size: tuple[int, int]) -> torch.Tensor:
    """HW bool mask -> 256x256 float target in the decoder's low-res frame (resized, padded)."""
    size = seg.sam.image_encoder.img_size
    t = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    t = F.interpolate(t, size=tuple(input_size), mode="bilinear", align_corners=False)
    t = F.pad(t, (0, size - input_size[1], 0, size - input_size[0]))
    t = F.interpolate(t, size=(size // 4, size // 4), mode="area")
    return (t[0, 0] > 0.5).float().to(seg.device)


def sample_prompt(mask: np.ndarray, rng: random.Random, box_fraction: float
                  ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """(points Nx2 (x, y), labels N, box XYXY) sampled from a HW bool mask."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if rng.random() < box_fraction:
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        jit = 0.1 * max(x1 - x0, y1 - y0)
        b = np.array([x0, y0, x1, y1], dtype=np.float64) + np.array(
            [rng.uniform(-jit, jit) for _ in range(4)]
        )
        b = np.clip(b, 0, [w, h, w, h])
        if b[2] - b[0] >= 1 and b[3] - b[1] >= 1:
            return None, None, b
    k = rng.randint(1, 3)
    idx = [rng.randrange(len(xs)) for _ in range(k)]
    pts = [[float(xs[i]), float(ys[i])] for i in idx]
    lab = [1] * k
    bys, bxs = np.nonzero(~mask)
    if len(bxs) and rng.random() < 0.5:
        j = rng.randrange(len(bxs))
        pts.append([float(bxs[j]), float(bys[j])])
        lab.append(0)
    return np.asarray(pts), np.asarray(lab), None


def evaluate(
    seg: TorchSam, items: list[tuple[Embedding, np.ndarray]], cfg: FinetuneConfig
) -> dict[str, float]:
    """NoC@``noc_iou`` and mIoU@1 of the RITM clicker over (embedding, gt mask) items."""
    nocs, first = [], []
    for emb, gt in items:
        ious = [iou for iou, _ in run_clicks(seg, emb, gt, None, max_clicks=cfg.eval_clicks,
                                             target_iou=cfg.noc_iou)]  # fmt: skip
        nocs.append(noc(ious, cfg.noc_iou, cfg.eval_clicks))
        first.append(ious[0])
    return {"noc": float(np.mean(nocs)), "miou1": float(np.mean(first)), "n": len(items)}


def improved(before: dict[str, float], after: dict[str, float]) -> bool:
    """mIoU@1 up and NoC not up, or NoC down and mIoU@1 not down."""
    return (after["miou1"] > before["miou1"] and after["noc"] <= before["noc"]) or (
        after["noc"] < before["noc"] and after["miou1"] >= before["miou1"]
    )


def _training_data(
    session: Session, project_id: int
) -> dict[int, tuple[str, str, list[dict[str, Any]]]]:
    """image id -> (uri, sha256, [final mask RLEs])."""
    return {
        image_id: (uri, sha or f"image{image_id}", rles)
        for image_id, (uri, sha, rles) in accepted_mask_rles(session, project_id=project_id).items()
    }


def finetune_project(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    model_version_id: int | None,
    models_dir: Path,
    config: FinetuneConfig | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune, evaluate, save and register; returns ``{"model_version_id", "promoted",
    "before", "after", "losses", "checkpoint", "sha256"}``.

    ``cache_dir``: embeddings of the frozen encoder are cached there (``EmbeddingCache``,
    keyed by image sha256 and the parent checkpoint's sha256), so later runs skip the encoder.
    """
    cfg = config or FinetuneConfig()
    say = progress or (lambda _m: None)
    with factory() as s:
        if model_version_id is None:
            rnd = current_round(s, project_id=project_id)
            model_version_id = rnd.model_version_id if rnd else None
        parent = (
            find_model_version(s, model_version_id=model_version_id) if model_version_id else None
        )
        if parent is None:
            raise NotFound("no SAM model version to fine-tune: pass --model-version")
        if parent.backend != "sam" or not parent.checkpoint_path or not parent.model_type:
            raise InvalidInput(f"model version {parent.id} is {parent.backend} without a SAM "
                               "checkpoint; decoder fine-tuning needs a sam model version")  # fmt: skip
        data = _training_data(s, project_id)
    if len(data) < 2:
        raise InvalidInput(
            f"need final masks on at least 2 images (have {len(data)}): annotate first"
        )
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    ids = sorted(data)
    rng.shuffle(ids)
    if cfg.max_images:
        ids = ids[: cfg.max_images]
    n_hold = min(max(1, round(len(ids) * cfg.holdout)), len(ids) - 1)
    hold_ids, train_ids = ids[:n_hold], ids[n_hold:]
    sam = load_checkpoint(
        parent.model_type, Path(parent.checkpoint_path), parent.checkpoint_sha256, device
    )
    seg = TorchSam(sam, device)
    seg.model_key = (
        f"sam-encoder:{parent.model_type}:{parent.checkpoint_sha256 or parent.checkpoint_path}"
    )
    cache = EmbeddingCache(cache_dir, seg.model_key, max_items=0)
    embs: dict[int, Embedding] = {}
    masks: dict[int, list[np.ndarray]] = {}
    for k, image_id in enumerate(ids, 1):
        uri, sha, rles = data[image_id]
        embs[image_id] = cache.get_or_compute(sha, lambda uri=uri: seg.embed(load_rgb(uri)))
        masks[image_id] = [m for m in (decode_rle(r) for r in rles) if m.any()]
        say(f"embedded {k}/{len(ids)} images")
    held = [(embs[i], m) for i in hold_ids for m in masks[i]][: cfg.max_eval_masks]
    before = evaluate(seg, held, cfg)
    say(f"held-out before: {before}")
    for p in sam.parameters():
        p.requires_grad_(False)
    params = list(sam.mask_decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    train = [(i, j) for i in train_ids for j in range(len(masks[i]))]
    targets = {
        (i, j): low_res_target(seg, masks[i][j], embs[i].features["input_size"]) for i, j in train
    }
    losses: list[float] = []
    sam.mask_decoder.train()
    for step in range(cfg.steps):
        i, j = train[rng.randrange(len(train))]
        gt = masks[i][j]
        pts, labels, box = sample_prompt(gt, rng, cfg.box_fraction)
        _full, low, iou = seg.forward(embs[i], pts, labels, box)
        loss = sam_loss(low[0, 0], targets[(i, j)], iou)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 20 == 0:
            say(f"step {step + 1}/{cfg.steps} loss {np.mean(losses[-20:]):.4f}")
    sam.mask_decoder.eval()
    after = evaluate(seg, held, cfg)
    promote = improved(before, after)
    say(f"held-out after: {after}; promoted: {promote}")
    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    path = (models_dir / f"{parent.model_type}-decoder-ft-{parent.id}-{stamp}.pth").resolve()
    tmp = path.with_suffix(".tmp")
    torch.save(sam.state_dict(), tmp)
    tmp.replace(path)
    digest = file_sha256(path)
    with transaction(factory) as s:
        child = add_model_version(
            s, name=f"{parent.name}+decoder-ft"[:200], backend="sam", model_type=parent.model_type,
            checkpoint_path=str(path), checkpoint_sha256=digest, parent_id=parent.id,
            params={"finetune": asdict(cfg), "train_images": train_ids, "heldout_images": hold_ids},
            metrics={"heldout_before": before, "heldout_after": after, "loss_first": losses[:5],
                     "loss_last": losses[-5:]},
            promoted=promote,
        )  # fmt: skip
        child_id = child.id
    return {"model_version_id": child_id, "promoted": promote, "before": before, "after": after,
            "losses": losses, "checkpoint": str(path), "sha256": digest}  # fmt: skip
