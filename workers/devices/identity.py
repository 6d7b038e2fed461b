"""What a device is: the unit of hardware a model worker process runs its calls on.

A GPU is ``<host>/gpu<N>`` (every process pinned to it, in any worker on that host, shares
its record: a broken GPU breaks all of them); on a CPU host each pool process is its own
device, ``<worker node name>/cpu<pool index>`` (a replacement process takes the same pool
index, hence the same record). Ids never contain ``:`` (they are one part of a Redis key).
"""

from __future__ import annotations

import socket

from workers.gpu import pool_index, process_device, resolve_device, visible_gpus


def _part(text: str) -> str:
    return text.replace(":", "_").replace(" ", "_")


def device_id(worker: str, device: str, index: int, host: str | None = None) -> str:
    """The id of the device a process runs on.

    Parameters:
      worker: the Celery node name (``name@host``).
      device: the process's resolved device (``cpu`` or ``gpu:N``).
      index: its pool index.
      host: the machine's name (a GPU belongs to the machine, not to one worker).
    """
    if device.startswith("gpu"):
        return f"{_part(host or socket.gethostname())}/gpu{device.split(':', 1)[1] if ':' in device else '0'}"
    return f"{_part(worker)}/cpu{index}"


def this_device(worker: str, device_setting: str) -> str:
    """The calling pool process's device."""
    return device_id(worker, process_device(device_setting), pool_index())


def worker_devices(worker: str, device_setting: str, concurrency: int) -> list[str] | None:
    """Every device a worker's pool runs on, as its processes will name them; None when the
    parent cannot tell without asking the GPU driver (``gpu`` with no ``CUDA_VISIBLE_DEVICES``:
    the driver must not be touched before the pool forks)."""
    gpus = visible_gpus()
    if device_setting == "gpu" and gpus is None:
        return None
    try:
        return sorted({device_id(worker, resolve_device(device_setting, i, gpus), i) for i in range(concurrency)})
    except RuntimeError:
        return None
