"""Run programs under OneFlow's launcher with bounded time and a private port.

Each launcher start costs seconds, so tests group many checks into one launch and
parse the JSON lines the ranks print.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Lines OneFlow prints on every CPU-only start; they would drown real failures.
_NOISE = ("libibverbs", "CUDA driver version", "OMP_NUM_THREADS", "*****", "rpc_client.cpp")

# Aborts of OneFlow 0.9 itself that strike at random, rarely, and never in what a test
# checks; a launch that dies of one is run once more, in full, with a warning.
UPSTREAM_ABORTS = (
    # Tearing down an nn.Graph whose stages pass tensors between processes: a
    # CopyCommNetActor is deleted while a read of its is still queued. The program has
    # printed its results by then. Seen once, in the 19th CI run (test_pipeline, 2 ranks).
    "comm_network.cpp:33] Check failed: actor_read_ctx->waiting_list.empty()",
)


@dataclass
class Launch:
    returncode: int
    stdout: str
    stderr: str

    def records(self) -> list[dict]:
        """The JSON objects the ranks printed; ranks share stdout, so lines may run together."""
        decoder = json.JSONDecoder()
        found, start = [], self.stdout.find('{"rank"')
        while start != -1:
            record, end = decoder.raw_decode(self.stdout, start)
            found.append(record)
            start = self.stdout.find('{"rank"', end)
        return found

    def upstream_abort(self) -> str | None:
        """The known OneFlow abort this launch failed of, if it failed of one."""
        if self.returncode == 0:
            return None
        return next((abort for abort in UPSTREAM_ABORTS if abort in self.stderr), None)

    def explain(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{_quiet(self.stderr)}"
        )


def free_port() -> int:
    """A free TCP port: any, or the first free one of SPECC_LAUNCH_PORTS ("30200-30299").

    The range lets several test runs on one machine stay out of each other's ports.
    """
    first, _, last = os.environ.get("SPECC_LAUNCH_PORTS", "0-0").partition("-")
    for port in range(int(first), int(last or first) + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError(f"no free port in SPECC_LAUNCH_PORTS={first}-{last}")


def launch(
    nproc: int,
    program: list[str],
    *,
    pythonpath: list[Path],
    cwd: Path,
    timeout: float = 300,
    reset: Callable[[], object] | None = None,
) -> Launch:
    """`python -m oneflow.distributed.launch --nproc_per_node nproc <program>` on loopback.

    A launch that dies of one of OneFlow's UPSTREAM_ABORTS is run again, once; the second
    run's result is the one returned, so a pass is still a whole run that passed. A
    program whose second run would find what its first left behind (a log it appends to)
    gives `reset`, which undoes that before the second run.
    """
    run = _launch_once(nproc, program, pythonpath=pythonpath, cwd=cwd, timeout=timeout)
    abort = run.upstream_abort()
    if abort is None:
        return run
    warnings.warn(f"launch of {program} run again after OneFlow's own abort: {abort}", stacklevel=2)
    if reset is not None:
        reset()
    return _launch_once(nproc, program, pythonpath=pythonpath, cwd=cwd, timeout=timeout)


def _launch_once(
    nproc: int, program: list[str], *, pythonpath: list[Path], cwd: Path, timeout: float
) -> Launch:
    process = start(nproc, program, pythonpath=pythonpath, cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"launch of {program} timed out after {timeout}s\n{stdout}\n{_quiet(stderr)}"
        ) from None
    return Launch(process.returncode, stdout, stderr)


def start(
    nproc: int, program: list[str], *, pythonpath: list[Path], cwd: Path
) -> subprocess.Popen[str]:
    """The launcher started in a session (process group) of its own, not waited for."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    command = [
        sys.executable,
        "-m",
        "oneflow.distributed.launch",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *program,
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _quiet(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not any(n in line for n in _NOISE))
