"""How many CPU threads the models compute with: every core this process may use.

Ultralytics sets torch to ``min(8, os.cpu_count() - 1)`` threads whenever it picks a
device (``select_device``: every train, val, predict and export), to leave a core to its
data loaders. But on the CPU it trains with ``workers`` forced to 0, loading each batch in
the same process between model steps, so on a 2-core machine (this project's CI and
training machine) one core sat idle while the model, 95% of a training batch, ran on the
other. On both cores a training batch takes 1.5-1.8x less time and ultralytics' batched
predict runs 1.7x faster (docs/benchmarks.md, "CPU detection throughput" and "Where a
CPU training step goes").

``OMP_NUM_THREADS`` decides, set by :mod:`detection.offline` to the usable cores unless
the user set it (to share a machine: each pytest worker sets 1), and read here as the
one policy for torch and ONNX Runtime alike.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or ``taskset``
    limits it), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """``OMP_NUM_THREADS`` when it is a positive whole number, else every usable core."""
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        threads = 0
    return threads if threads > 0 else usable_cores()


def use_cpu_threads() -> int:
    """Gives torch :func:`cpu_threads` threads now and whenever ultralytics picks a device
    later (its ``NUM_THREADS``, read at each ``select_device``). Returns the count."""
    import torch
    import ultralytics.utils.torch_utils as torch_utils

    threads = cpu_threads()
    torch_utils.NUM_THREADS = threads
    torch.set_num_threads(threads)
    return threads


def ultralytics_threads() -> int:
    """The threads ultralytics itself gives torch here, ``min(8, os.cpu_count() - 1)``: how
    it runs as shipped, which the benchmarks measure beside equal threads."""
    from ultralytics.utils import NUM_THREADS

    return NUM_THREADS
