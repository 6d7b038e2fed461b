"""What a model worker process does about its device and its memory.

- Device pinning: ``FUSEBOX_DEVICE=gpu`` (no index) pins each pool process to one GPU,
  round-robin over the GPUs the process can see (``CUDA_VISIBLE_DEVICES``, whose entries
  Paddle numbers ``gpu:0``, ``gpu:1``... in order): with ``-c 4`` on two GPUs, processes
  0 and 2 run on ``gpu:0``, 1 and 3 on ``gpu:1``. Each process holds one copy of each model
  on its one GPU. ``gpu:N`` pins every process to GPU N.
- Paddle's GPU memory settings, exported as Paddle's ``FLAGS_*`` before Paddle is imported
  (in the pool process, after the fork).
- Out of memory: a model call that runs out of (GPU or host) memory is a failure the
  breaker counts, told apart in logs and reasons, and the pool process that hit it is
  recycled once its job is answered, so that its memory goes back to the device and the
  host. The same recycling ends a process whose memory crept past
  ``FUSEBOX_MAX_MEMORY_PER_CHILD`` (Celery's ``worker_max_memory_per_child``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def visible_gpus(environ: Mapping[str, str] | None = None) -> int | None:
    """How many GPUs ``CUDA_VISIBLE_DEVICES`` lets this process see; None when it is unset
    (then Paddle is asked). An empty value or ``-1`` hides every GPU: 0."""
    env = os.environ if environ is None else environ
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if not entries or entries[0] == "-1":
        return 0
    return len(entries)


def _paddle_gpu_count() -> int:
    import paddle  # only on GPU hosts, in the pool process

    return int(paddle.device.cuda.device_count())


def pool_index() -> int:
    """This process's index in its Celery prefork pool (stable: a recycled process's
    replacement takes the same index); 0 outside a pool."""
    from billiard.process import current_process

    index = getattr(current_process(), "index", None)
    return int(index) if index is not None else 0


def resolve_device(device: str, index: int, gpus: int | None) -> str:
    """The device one pool process runs its models on.

    Parameters:
      device: the setting: ``cpu``, ``gpu:N`` (every process on GPU N) or ``gpu`` (one GPU
        per process, round-robin).
      index: the process's pool index.
      gpus: how many GPUs the process can see.

    Raises:
      RuntimeError: a GPU asked for and none visible, or ``gpu:N`` past the visible ones.
    """
    if device == "cpu":
        return device
    if gpus is not None and gpus < 1:
        raise RuntimeError(f"FUSEBOX_DEVICE={device} but no GPU is visible (CUDA_VISIBLE_DEVICES)")
    if device == "gpu":
        return f"gpu:{index % gpus}" if gpus else "gpu:0"
    number = int(device.split(":", 1)[1])
    if gpus is not None and number >= gpus:
        raise RuntimeError(f"FUSEBOX_DEVICE={device} but only {gpus} GPU(s) are visible (gpu:0..gpu:{gpus - 1})")
    return device


def process_device(device: str) -> str:
    """:func:`resolve_device` for the calling process."""
    if device == "cpu":
        return device
    gpus = visible_gpus()
    if gpus is None and device == "gpu":
        gpus = _paddle_gpu_count()
    return resolve_device(device, pool_index(), gpus)


def paddle_memory_flags(allocator: str, fraction: float | None) -> dict[str, str]:
    """Paddle's GPU memory flags for the settings.

    Parameters:
      allocator: ``auto_growth`` (take memory as needed, in chunks; several processes can
        share a GPU) or ``naive_best_fit`` (reserve ``fraction`` of the GPU up front).
      fraction: share of each GPU's memory (0, 1] a process starts with; None: Paddle's
        default.
    """
    flags = {"FLAGS_allocator_strategy": allocator}
    if fraction is not None:
        flags["FLAGS_fraction_of_gpu_memory_to_use"] = f"{fraction:g}"
    return flags


def export_paddle_memory_flags(allocator: str, fraction: float | None) -> None:
    """Puts the flags in this process's environment, where Paddle reads them at import;
    an operator's own ``FLAGS_*`` wins."""
    for key, value in paddle_memory_flags(allocator, fraction).items():
        os.environ.setdefault(key, value)


OOM_MARKERS = ("out of memory", "resourceexhausted", "cuda error(2)", "cudaerrormemoryallocation")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a model error is running out of memory: Python's MemoryError (what Paddle
    raises for ``ResourceExhaustedError``, and the fault switch's ``oom_rate``) or an error
    whose text says so (CUDA's own messages)."""
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__} {exc}".lower().replace(" ", "")
    return any(marker.replace(" ", "") in text for marker in OOM_MARKERS)


_recycle_reason: str | None = None


def recycle_requested() -> str | None:
    """Why this process will be recycled after its current job, if it will."""
    return _recycle_reason


def request_recycle(reason: str) -> None:
    """Ends this pool process after its current job, once the job's answer is reported;
    the pool starts a fresh one (with the same pool index, hence the same GPU) in its place.

    The pool checks ``worker_max_memory_per_child`` after every job, by asking
    ``billiard.pool.mem_rss``; this makes that check see an exhausted process. It needs the
    limit set (``FUSEBOX_MAX_MEMORY_PER_CHILD`` > 0, as it is by default) and the prefork
    pool; elsewhere it only logs.
    """
    global _recycle_reason
    if _recycle_reason is None:
        log.warning("this worker process (pid %d) will be recycled after its job: %s", os.getpid(), reason)
    _recycle_reason = reason
    import billiard.pool as pool

    if getattr(pool.mem_rss, "fusebox_recycle", False):
        return
    measure = pool.mem_rss

    def mem_rss() -> Any:
        return 1 << 50 if _recycle_reason is not None else measure()

    mem_rss.fusebox_recycle = True  # type: ignore[attr-defined]
    pool.mem_rss = mem_rss
