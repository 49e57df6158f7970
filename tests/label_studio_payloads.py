"""Label Studio's requests to the ML backend, as Label Studio 1.x sends them: one labeling
config, the task shape, the ``/predict`` body and a smart-keypoint click (shared by the
``/ml`` route tests)."""

from __future__ import annotations

from typing import Any

LABEL_CONFIG = """
<View>
    <Image name="image" value="$image" zoom="true"/>
    <BrushLabels name="tag" toName="image">
        <Label value="Banana" background="#FF0000"/>
        <Label value="Orange" background="#0d14d3"/>
    </BrushLabels>
    <KeyPointLabels name="tag2" toName="image" smart="true" >
        <Label value="Banana" background="#000000" showInline="true"/>
        <Label value="Orange" background="#000000" showInline="true"/>
    </KeyPointLabels>
    <RectangleLabels name="tag3" toName="image"  >
        <Label value="Banana" background="#000000" showInline="true"/>
        <Label value="Orange" background="#000000" showInline="true"/>
    </RectangleLabels>
</View>
"""


def ls_task(url: str, **data: Any) -> dict[str, Any]:
    """A task as Label Studio sends it; ``data.image`` is the URL Label Studio serves."""
    return {
        "id": 7,
        "data": {"image": url, **data},
        "meta": {},
        "created_at": "2024-05-01T10:00:00.000000Z",
        "updated_at": "2024-05-01T10:00:00.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": 7,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "project": 3,
        "updated_by": None,
        "file_upload": None,
        "annotations": [],
        "predictions": [],
    }


def predict_body(tasks: list[dict[str, Any]], context: Any = None) -> dict[str, Any]:
    """The body of Label Studio's ``POST /predict`` (interactive: ``context`` holds clicks)."""
    return {
        "tasks": tasks,
        "model_version": None,
        "project": "3.1714557600",
        "label_config": LABEL_CONFIG,
        "params": {"login": None, "password": None, "context": context},
    }


def click(
    x: float, y: float, *, width: int, height: int, label: str = "Banana", positive: bool = True
) -> dict[str, Any]:
    """An interactive context with one smart keypoint at (x, y) in percent of the image."""
    return {
        "result": [
            {
                "type": "keypointlabels",
                "from_name": "tag2",
                "to_name": "image",
                "is_positive": positive,
                "original_width": width,
                "original_height": height,
                "value": {"x": x, "y": y, "keypointlabels": [label]},
            }
        ]
    }
