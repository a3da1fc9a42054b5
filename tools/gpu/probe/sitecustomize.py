"""On the lent GPU machine only (tools/gpu/run.sh puts this folder first on PYTHONPATH):
records every name lookup off loopback, in every Python process, to $LOOKUP_LOG, so the
run proves that nothing tries the network (ultralytics' AMP check would load yolo26n.pt)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

_LOOPBACK = {None, "localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


def _recorded(real: Callable[..., object]) -> Callable[..., object]:
    def lookup(host: str | bytes | None, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK and os.environ.get("LOOKUP_LOG"):
            with open(os.environ["LOOKUP_LOG"], "a") as log:
                log.write(f"{name}\n")
        return real(host, *args, **kwargs)

    return lookup


socket.getaddrinfo = _recorded(socket.getaddrinfo)
socket.gethostbyname = _recorded(socket.gethostbyname)
