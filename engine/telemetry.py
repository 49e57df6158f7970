"""Prometheus metric objects of this process (``prometheus_client``), shared by every layer.

Defined once at import, in the default registry; ``annotator_ui.observability`` serves
them at ``/metrics``. Counters and histograms only, so they also work in
``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before the
first import; ``dataengine serve --workers N`` does that). What lives in the database
(pre-fill queue depth, worker heartbeats) is collected from there at scrape time instead.

Metric names (all prefixed ``dataengine_``):

- ``http_request_duration_seconds{method, route, status}``: histogram; ``route`` is the
  route template (``/api/images/{image_id}/decode``), never the raw path.
- ``decode_duration_seconds``: histogram of ``POST /api/images/{image_id}/decode``.
- ``prefill_images_total{outcome}``: images pre-filled by this process (done | failed).
- ``events_stored_total``: effort events stored (duplicates and rejects not counted).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_SECONDS = Histogram(
    "dataengine_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DECODE_SECONDS = Histogram(
    "dataengine_decode_duration_seconds",
    "Latency of successful interactive decodes (POST /api/images/{image_id}/decode), whole request.",
    buckets=(0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PREFILL_IMAGES = Counter(
    "dataengine_prefill_images",
    "Images pre-filled by this process, by outcome (done or failed).",
    ["outcome"],
)
EVENTS_STORED = Counter(
    "dataengine_events_stored", "Effort events stored (new UUIDs only) by this process."
)
