"""The ``--ray`` options of `dataengine prefill` and `dataengine embed`: the cluster to use,
the pipeline's options (``engine.flywheel.prefill_ray.RayOptions``) and the model each actor
builds; ``ray_session`` connects for the length of a command."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scripts.commands.common import domain_errors, fail

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.flywheel.prefill_ray import RayOptions
    from engine.settings import Settings


# The --ray options of `prefill` and `embed` (defaults: False, None, 1, 0.0, 4).
RayFlag = Annotated[
    bool, typer.Option("--ray", help="Run on a Ray cluster (Ray Data; needs the `ray` extra).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: DATAENGINE_RAY_ADDRESS, "
        "else a local cluster on this machine).",
    ),
]
RayActors = Annotated[
    int, typer.Option("--actors", help="With --ray: model actors (one model each).")
]
RayGpusPerActor = Annotated[
    float,
    typer.Option(
        "--gpus-per-actor", help="With --ray: GPUs each actor reserves (0: CPU; 0.5 shares)."
    ),
]
RayBatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size", help="With --ray: images per model call (the SAM encoder's batch)."
    ),
]


@dataclass(frozen=True)
class RayRun:
    """``--ray`` and its options: where the cluster is and how the pipeline uses it."""

    address: str | None
    options: RayOptions


def ray_run(
    use_ray: bool,
    settings: Settings,
    *,
    address: str | None,
    actors: int,
    gpus_per_actor: float,
    batch_size: int,
) -> RayRun | None:
    """The ``RayRun`` of the command line (None without ``--ray``); bad values exit 1."""
    if not use_ray:
        if address is not None:
            fail("--address needs --ray")
        return None
    from engine.flywheel.prefill_ray import RayOptions

    with domain_errors():
        opts = RayOptions(actors=actors, gpus_per_actor=gpus_per_actor, batch_size=batch_size)
    return RayRun(address=address or settings.ray_address or None, options=opts)


@contextmanager
def ray_session(run: RayRun) -> Iterator[None]:
    """Connect to the cluster (or start a local one, shut down at the end); Ray's failures
    exit 1 with the fix. A connection the process already has is used as it is."""
    from engine.flywheel.ray_cluster import RayUnavailable, connect, import_ray

    try:
        started = not import_ray().is_initialized()
        ray = connect(run.address)
    except RayUnavailable as err:
        fail(str(err))
    except (ConnectionError, RuntimeError, ValueError) as err:
        fail(f"cannot reach the Ray cluster at {run.address or 'local'}: {err}")
    try:
        yield
    except ray.exceptions.RayError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fail(
            f"the Ray run stopped ({type(err).__name__}: {first}); every image written so far "
            "is kept: run the same command again to do the rest"
        )
    finally:
        if started:
            ray.shutdown()  # disconnect; a local cluster this command started stops with it


def actor_device(run: RayRun, device: str | None, settings: Settings) -> str:
    """The torch device inside a model actor: its GPU when it reserves one (Ray sets
    CUDA_VISIBLE_DEVICES per actor), else the option / setting."""
    if run.options.gpus_per_actor > 0:
        return "cuda"
    return device or settings.device


def actor_checkpoint(segmenter: Any, checkpoint: Path | None, settings: Settings) -> str | None:
    """The checkpoint path each model actor loads (absolute; None for a non-sam backend)."""
    if segmenter.name != "sam":
        return None
    path = checkpoint or settings.sam_checkpoint
    return str(Path(path).resolve()) if path else None
