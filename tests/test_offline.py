"""Nothing reaches beyond loopback: the whole chain under ``strace``, children included.

A Python-level socket hook would miss lookups made by C libraries (glibc's resolver,
MongoDB, ONNX Runtime) and by child processes (FiftyOne's database service, data
loader workers), so the kernel's view is taken: every ``connect``/``sendto``/``sendmsg``
of every process the commands start (``strace -f``). A DNS lookup shows there as a
packet to port 53, whichever address the resolver has.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detection import offline

pytestmark = pytest.mark.slow

_ADDRESS = re.compile(
    r"sin6?_port=htons\((?P<port>\d+)\).*?"
    r'(?:inet_addr\("(?P<v4>[^"]+)"\)|inet_pton\(AF_INET6, "(?P<v6>[^"]+)")'
)


def outside_connections(trace: str) -> list[str]:
    """The lines of an ``strace`` log that reach beyond loopback or ask a DNS server.

    Unix sockets (nscd, the X server) and netlink are not the network. An unspecified
    address (``0.0.0.0``) is a local bind-style probe, not a peer.
    """
    found = []
    for line in trace.splitlines():
        match = _ADDRESS.search(line)
        if not match:
            continue
        address = ipaddress.ip_address(match["v4"] or match["v6"])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        local = address.is_loopback or address.is_unspecified
        if int(match["port"]) == 53 or not local:
            found.append(line.strip())
    return found


def _strace_line(call: str, address: str, port: int) -> str:
    """One line as ``strace -f`` prints it for an IPv4 or IPv6 peer."""
    if ":" in address:
        peer = (
            f"sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl(0), "
            f'inet_pton(AF_INET6, "{address}", &sin6_addr), sin6_scope_id=0'
        )
    else:
        peer = f'sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("{address}")'
    return f"4242  {call}(3, {{{peer}}}, 16) = 0"


@pytest.mark.parametrize(
    ("call", "address", "port", "outside"),
    [
        ("connect", "10.255.255.53", 53, True),  # DNS, the resolver in /etc/resolv.conf
        ("sendto", "127.0.0.53", 53, True),  # DNS through a loopback resolver still counts
        ("connect", "140.82.121.4", 443, True),
        ("connect", "2606:50c0:8000::154", 443, True),
        ("connect", "::ffff:140.82.121.4", 443, True),  # IPv4 in IPv6 clothing
        ("connect", "127.0.0.1", 27017, False),  # FiftyOne's database
        ("connect", "::1", 5151, False),  # the App
        ("connect", "0.0.0.0", 80, False),
    ],
)
def test_outside_connections_are_recognised(
    call: str, address: str, port: int, outside: bool
) -> None:
    assert bool(outside_connections(_strace_line(call, address, port))) is outside


def test_unix_sockets_are_not_the_network() -> None:
    line = '9 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT'
    assert outside_connections(line) == []


def _user_environment(state: Path) -> dict[str, str]:
    """A user's shell: none of the switches ``detection.offline`` sets (the command must
    set them itself), and a project state folder that does not exist yet (a fresh clone:
    no ultralytics settings file, no font)."""
    ours = {
        *offline._SWITCHES,
        "YOLO_CONFIG_DIR",
        "FIFTYONE_DATABASE_DIR",
        "FIFTYONE_DEFAULT_DATASET_DIR",
        "MPLCONFIGDIR",
    }
    environment = {k: v for k, v in os.environ.items() if k not in ours}
    environment["DEFECTS_STATE_DIR"] = str(state)
    return environment


def _left_in(temporary: Path) -> list[str]:
    """What a command left in the temporary folder, but for torch's own cache folder
    (``torchinductor_USER``), which importing its compiler makes, empty, and keeps for
    later runs as a cache should."""
    return sorted(
        path.name
        for path in temporary.iterdir()
        if not (path.name.startswith("torchinductor_") and not any(path.iterdir()))
    )


def _repository_status() -> str:
    """``git status`` of the repository (tracked and untracked files, not ignored ones)."""
    root = Path(__file__).resolve().parents[1]
    status = ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"]
    return subprocess.run(status, capture_output=True, text=True, check=True).stdout


def test_the_whole_chain_never_reaches_beyond_loopback(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("Debian's strace is needed for the network test (`make test` installs it)")
    environment = _user_environment(tmp_path / "fresh-state")
    tiny = "--imgsz 64 --batch 8 --device cpu --workers 0 --weights-dir {T}/weights"
    chain = {
        "synth": "synth --out {T}/src --images 16",
        "convert": "convert {T}/src --dataset synthetic --out {T}/data",
        "train": f"train --data {{T}}/data --name net --epochs 1 {tiny}",
        "evaluate": "evaluate --weights {W} --data {T}/data --out {T}/report --device cpu",
        "predict (torch)": "predict {T}/data/images/val --weights {W} --out {T}/t --backend torch",
        "predict (onnx)": "predict {T}/data/images/val --weights {W} --out {T}/o",  # exports
        "review": "review --data {T}/data --weights {W} --no-launch --name offline-chain",
        # ... and every other command: each draws, plots or exports in its own way.
        "validate": "validate {T}/src",
        "compare": "compare --data {T}/data --weights {W} neu-det --out {T}/compare --device cpu",
        "train-cls": f"train-cls --data {{T}}/data --backbone {{W}} --name cls --epochs 1 {tiny}",
        "classify": "classify {T}/data/images/val --weights {T}/weights/cls/best.pt --heatmap"
        " --out {T}/c",
        "release": "release --run {T}/weights/net --name net --data {T}/data --models-dir {T}/m",
    }
    weights = tmp_path / "weights" / "net" / "best.pt"
    # Every output is named; the working directory and the temporary folder are the
    # user's and must be left as they were found (empty here), the repository too.
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    environment["TMPDIR"] = str(temporary)
    repository = _repository_status()
    outside: dict[str, list[str]] = {}
    trace_network = [strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg"]
    for step, command in chain.items():
        log = tmp_path / f"strace-{len(outside)}.log"
        argv = [word.format(T=tmp_path, W=weights) for word in command.split()]
        result = subprocess.run(
            [*trace_network, "-o", str(log), sys.executable, "-m", "detection.cli", *argv],
            capture_output=True,
            text=True,
            cwd=work,
            env=environment,
            timeout=600,
        )
        assert result.returncode == 0, (step, result.stderr[-3000:])
        assert sorted(p.name for p in work.iterdir()) == [], step
        assert _left_in(temporary) == [], step
        trace = log.read_text()
        # strace saw it (the commands that import neither torch nor FiftyOne connect nowhere)
        assert "connect(" in trace or step in ("synth", "convert", "validate"), step
        outside[step] = outside_connections(trace)
    assert outside == {step: [] for step in chain}
    assert _repository_status() == repository
    # The settings ultralytics really reads keep everything off and inside the state folder.
    settings = tmp_path / "fresh-state" / "ultralytics" / "Ultralytics" / "settings.json"
    assert '"sync": false' in settings.read_text()
    assert (settings.parent / "Arial.ttf").is_file()
