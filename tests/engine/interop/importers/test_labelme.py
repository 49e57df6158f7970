"""labelme import on the wkentaro/labelme examples: labelme's own rasterisation, groups, __ignore__."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, Mask
from db.session import transaction
from engine.interop.importers import import_files
from engine.interop.importers.labelme import shape_to_mask
from engine.masks import decode_rle, mask_iou


def _masks_by_image(factory: sessionmaker[Session]) -> dict[str, list[Mask]]:
    out: dict[str, list[Mask]] = {}
    with transaction(factory) as s:
        for m in s.scalars(select(Mask).order_by(Mask.id)):
            out.setdefault(Path(s.get(Image, m.image_id).uri).stem, []).append(m)
    return out


def test_instance_segmentation_examples(factory: sessionmaker[Session], shared_data: Path) -> None:
    root = shared_data / "labelme-examples/examples/instance_segmentation"
    report = import_files(factory, fmt="labelme", project="voc", paths=[root / "data_annotated"])
    assert report.rejected == [] and report.images == 3
    assert [why for _, _, why in report.skipped] == [
        "__ignore__ region: stored as the image's ignore mask, not an object"
    ] * 2
    masks = _masks_by_image(factory)
    assert not any(m.label == "__ignore__" for ms in masks.values() for m in ms)

    # labelme's own COCO export of the same files: same instances, same pixel counts
    coco = json.loads((root / "data_dataset_coco/annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    stems = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
    want: dict[str, list[tuple[str, int]]] = {}
    for a in coco["annotations"]:
        want.setdefault(stems[a["image_id"]], []).append((names[a["category_id"]], int(a["area"])))
    got = {stem: sorted((m.label, m.area) for m in ms) for stem, ms in masks.items()}
    assert got == {stem: sorted(v) for stem, v in want.items()}
    assert report.masks == len(coco["annotations"]) == 12

    # and labelme's VOC instance maps (later shapes overwrite earlier ones there)
    for stem, ms in masks.items():
        ins = np.asarray(PILImage.open(root / f"data_dataset_voc/SegmentationObject/{stem}.png"))
        ids = [i for i in np.unique(ins) if i not in (0, 255)]
        assert len(ids) == len(ms)
        for k, m in zip(ids, ms, strict=True):
            assert mask_iou(decode_rle(m.rle), ins == k) > 0.96

    # group_id 0 joins the two "person" polygons of 2011_000003; __ignore__ is kept aside
    doc = json.loads((root / "data_annotated/2011_000003.json").read_text())
    h, w = doc["imageHeight"], doc["imageWidth"]
    grouped = shape_to_mask(doc["shapes"][1], h, w) | shape_to_mask(doc["shapes"][2], h, w)
    assert any(np.array_equal(decode_rle(m.rle), grouped) for m in masks["2011_000003"])
    with transaction(factory) as s:
        image = s.scalars(select(Image).where(Image.uri.endswith("2011_000003.jpg"))).one()
        ignore = decode_rle(image.meta["ignore_rle"])
    assert np.array_equal(ignore, shape_to_mask(doc["shapes"][4], h, w))


def test_primitives_shapes(factory: sessionmaker[Session], shared_data: Path) -> None:
    path = shared_data / "labelme-examples/examples/primitives/primitives.json"
    report = import_files(factory, fmt="labelme", project="shapes", paths=[path])
    skipped = {item.split(" ")[2].strip("(,"): why for _, item, why in report.skipped}
    assert set(skipped) == {"line", "point", "line_strip"}
    assert all("has no area" in why for why in skipped.values())
    rows = [m for ms in _masks_by_image(factory).values() for m in ms]
    assert sorted(m.label for m in rows) == [
        "circle",
        "octagon",
        "polygon",
        "rectangle",
        "rectangle",
    ]
    masks = {m.label: m for m in reversed(rows)}  # the first of each label
    assert masks["rectangle"].meta["import"]["format"] == "labelme"
    # rectangle [[32, 35], [132, 135]] drawn with outline: 101 x 101 pixels
    assert (
        masks["rectangle"].bbox == [32.0, 35.0, 101.0, 101.0]
        and masks["rectangle"].area == 101 * 101
    )
    # the mask shape is a PNG patch placed at its top-left point
    octagon = json.loads(path.read_text())["shapes"][-1]
    assert masks["octagon"].bbox[:2] == [417.0, 305.0]
    assert masks["octagon"].area == shape_to_mask(octagon, 450, 560).sum() > 1000


def test_embedded_image_data_is_checked_stored_and_ingested(
    factory: sessionmaker[Session], shared_data: Path, tmp_path: Path
) -> None:
    """labelme's tutorial file embeds its photo (imageData) and its imagePath names the
    JSON itself: the photo is decoded through the checked open, stored, and its 4 polygons
    imported. A file with broken imageData is refused alone; the batch goes on."""
    import base64
    import hashlib

    src = shared_data / "labelme-examples/examples/tutorial/apc2016_obj3.json"
    folder = tmp_path / "in"
    folder.mkdir()
    doc = json.loads(src.read_text())
    (folder / "a.json").write_text(json.dumps(doc))
    bad = {
        **doc,
        "imagePath": "nowhere.jpg",
        "imageData": base64.b64encode(b"not an image").decode(),
    }
    (folder / "b.json").write_text(json.dumps(bad))
    store = tmp_path / "store"
    report = import_files(
        factory, fmt="labelme", project="tut", paths=[folder], options={"image_store": str(store)}
    )
    assert [(Path(f.path).name, f.status) for f in report.files] == [
        ("a.json", "imported"),
        ("b.json", "rejected"),
    ]
    assert "embedded imageData is not a usable image" in (report.files[1].reason or "")
    assert report.masks == 4 and report.summary()["images_added"] == 1
    raw = base64.b64decode(doc["imageData"])
    sha = hashlib.sha256(raw).hexdigest()
    stored = store / sha[:2] / f"{sha}.jpg"
    assert stored.read_bytes() == raw
    with transaction(factory) as s:
        (image,) = s.scalars(select(Image)).all()
        assert (image.sha256, image.width, image.height) == (sha, 1210, 907)
        assert Path(image.uri) == stored.resolve()
        masks = s.scalars(select(Mask).order_by(Mask.id)).all()
        labels = [m.label for m in masks]
        want = shape_to_mask(doc["shapes"][1], 907, 1210)
        assert np.array_equal(decode_rle(masks[1].rle), want)
    assert labels == [sh["label"] for sh in doc["shapes"]]
    # the same embedded photo again (a copy of the file) reuses the stored, ingested image
    doc2 = {**doc, "shapes": doc["shapes"][:1]}
    (tmp_path / "again.json").write_text(json.dumps(doc2))
    again = import_files(
        factory, fmt="labelme", project="tut", paths=[tmp_path / "again.json"],
        options={"image_store": str(store)},
    )  # fmt: skip
    assert again.masks == 1 and again.summary()["images_added"] == 0
