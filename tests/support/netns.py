"""Two fake hosts on one Linux machine, for multi-node OneFlow tests.

OneFlow's multi-node launcher cannot run two "nodes" behind one loopback
address (node 1 sees empty local tensors, node 0 hangs), so a multi-node test
needs hosts with distinct addresses. Two network namespaces joined by a veth
pair give exactly that. Both veth ends are created directly inside the
namespaces, and each namespace has only ``lo`` and its veth end, no route
elsewhere: test traffic cannot leave the pair, and nothing is ever added to
the machine's own network. Addresses are a random /30 of 198.18.0.0/15
(RFC 2544 benchmarking range), which never routes to the internet.

Needs Linux, root (CAP_SYS_ADMIN + CAP_NET_ADMIN) and iproute2; tests should
``pytest.skip(netns_unavailable_reason())`` when that is not None.

Cleanup: namespaces are deleted (after killing every process inside them) on
context exit, on exceptions and KeyboardInterrupt, on SIGTERM/SIGHUP (handler
installed while a context is open) and at interpreter exit. A SIGKILLed run
cannot clean up; its namespaces carry its pid and are swept by the next run
(``remove_stale_namespaces``).

Standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import IO, Any

PREFIX = "specc-"
"""Every namespace this module creates is named ``specc-<pid>-<hex>-...``."""

BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")

# Exits 0 if a TCP connect to argv[1]:9 is accepted or refused: both mean the
# peer's kernel answered, i.e. the link and ARP work. Timeouts/unreachable fail.
_PROBE = (
    "import errno, socket, sys\n"
    "s = socket.socket(); s.settimeout(2)\n"
    "sys.exit(0 if s.connect_ex((sys.argv[1], 9)) in (0, errno.ECONNREFUSED) else 1)\n"
)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one bounded ``ip`` command; with check, raise with its stderr."""
    r = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
    return r


def netns_unavailable_reason() -> str | None:
    """None if namespaces + veth work here, else why not (for pytest.skip).

    Really creates and deletes a probe namespace, since containers often lack
    the capabilities even as root.
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "iproute2 `ip` command not found"
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
    veth = ("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    try:
        for what, args in (
            ("create a network namespace", ("netns", "add", name)),
            ("create a veth pair", veth),
            ("run a command in a namespace", ("netns", "exec", name, "true")),
        ):
            r = _ip(*args, check=False)
            if r.returncode != 0:
                who = "" if os.geteuid() == 0 else ", not running as root"
                return f"cannot {what} (needs CAP_SYS_ADMIN+CAP_NET_ADMIN{who}): {r.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run `ip`: {e}"
    finally:
        _ip("netns", "del", name, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Processes started by Host.popen, by namespace name. `ip netns pids` misses a
# process still on its way in (an `ip netns exec` that has not yet entered the
# namespace), which would then run on in the deleted namespace: these are
# killed by handle first.
_started: dict[str, list[tuple[subprocess.Popen[Any], bool]]] = {}


def _delete_netns(name: str) -> None:
    """Kill everything inside a namespace, then delete it (idempotent)."""
    for p, own_session in _started.pop(name, []):
        if p.poll() is not None:
            continue  # reaped: its pid may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if own_session:
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
    r = _ip("netns", "pids", name, check=False)
    for pid in r.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete ``specc-<pid>-...`` namespaces whose creating process is dead.

    The only backstop for runs killed with SIGKILL. Returns the names removed.
    """
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = (line.split() or [""])[0]  # lines look like "NAME (id: 3)"
        pid = name.removeprefix(PREFIX).split("-", 1)[0]
        if name.startswith(PREFIX) and pid.isdigit() and not _pid_alive(int(pid)):
            _delete_netns(name)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Host:
    """One fake machine: a namespace with one address on the shared link."""

    name: str  # network namespace name
    addr: str  # IPv4 address of this host's veth end
    ifname: str  # veth interface name inside the namespace

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in this host, in its own session by default.

        ``ip netns exec`` execs the command, so the Popen's pid is the command
        itself and ``os.killpg(p.pid, ...)`` reaches all its children. Closing
        the :class:`TwoHosts` kills it (its process group) if still running.
        """
        kwargs.setdefault("start_new_session", True)
        p = subprocess.Popen(self.command(argv), env=env, cwd=cwd, **kwargs)
        _started.setdefault(self.name, []).append((p, bool(kwargs["start_new_session"])))
        return p

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, check: bool = False, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this host to completion (text; captured by default)."""
        if not {"stdout", "stderr"} & kwargs.keys():
            kwargs.setdefault("capture_output", True)
        cmd = self.command(argv)
        return subprocess.run(cmd, check=check, timeout=timeout, text=True, **kwargs)


# Open TwoHosts contexts, torn down by the signal handler / atexit backstops.
_live: set[TwoHosts] = set()
_prev_handlers: dict[int, Any] = {}
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _close_all() -> None:
    for hosts in list(_live):
        hosts.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Tear down all open contexts, then behave as the previous handler."""
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    _close_all()
    if callable(prev):
        prev(signum, frame)
    elif prev != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _register(hosts: TwoHosts) -> None:
    # Handlers can only be set from the main thread; elsewhere atexit remains.
    if not _live and threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            _prev_handlers[sig] = signal.getsignal(sig) or signal.SIG_DFL
            signal.signal(sig, _on_signal)
    _live.add(hosts)


def _unregister(hosts: TwoHosts) -> None:
    _live.discard(hosts)
    if not _live and threading.current_thread() is threading.main_thread():
        for sig, prev in list(_prev_handlers.items()):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, prev)
            del _prev_handlers[sig]


atexit.register(_close_all)


class TwoHosts:
    """Context manager yielding two :class:`Host` s joined by a veth pair.

    ``with TwoHosts() as (h0, h1): ...`` -- names are unique per run, the
    link is checked before entering, and everything is removed on exit.
    """

    def __init__(self, *, setup_timeout: float = 20.0) -> None:
        token = secrets.token_hex(3)
        self.run_id = f"{PREFIX}{os.getpid()}-{token}"
        # A random /30 of the benchmarking range. The namespaces are isolated,
        # so clashes between concurrent runs would be harmless anyway.
        base = int(BENCHMARK_NET.network_address) + 4 * secrets.randbelow(
            BENCHMARK_NET.num_addresses // 4
        )
        self.network = ipaddress.ip_network((base, 30))
        a0, a1 = (str(a) for a in self.network.hosts())
        # Interface names: <= 15 chars (IFNAMSIZ); they exist only in the namespaces.
        self.hosts = (
            Host(f"{self.run_id}-h0", a0, f"sp{token}h0"),
            Host(f"{self.run_id}-h1", a1, f"sp{token}h1"),
        )
        self.setup_timeout = setup_timeout

    def __enter__(self) -> tuple[Host, Host]:
        remove_stale_namespaces()
        _register(self)  # before creating anything, so signals clean up too
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self.hosts

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _setup(self) -> None:
        h0, h1 = self.hosts
        for h in self.hosts:
            _ip("netns", "add", h.name)
        # Both ends are born inside their namespaces: nothing ever appears in
        # the machine's own namespace, even if we die halfway.
        _ip("link", "add", h0.ifname, "netns", h0.name, "type", "veth",
            "peer", "name", h1.ifname, "netns", h1.name)  # fmt: skip
        for h in self.hosts:
            _ip("-n", h.name, "link", "set", "lo", "up")
            _ip("-n", h.name, "addr", "add", f"{h.addr}/30", "dev", h.ifname)
            _ip("-n", h.name, "link", "set", h.ifname, "up")
        self._wait_reachable(h1, h0.addr)

    def _wait_reachable(self, src: Host, dst: str) -> None:
        deadline = time.monotonic() + self.setup_timeout
        while True:
            r = src.run([sys.executable, "-c", _PROBE, dst], timeout=self.setup_timeout)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dst} unreachable from {src.name}: {r.stderr}")
            time.sleep(0.2)

    def close(self) -> None:
        """Kill processes in the namespaces and delete them (idempotent).

        Deleting a namespace also deletes its veth end and hence the peer.
        Safe to re-enter from the signal handler: the work is repeatable.
        """
        for h in self.hosts:
            _delete_netns(h.name)
        _unregister(self)

    def leftovers(self) -> list[str]:
        """What of this run still exists: namespaces named after it, its links.

        Empty after :meth:`close`. The veth ends are looked for in the
        machine's own namespace too, where they should never have appeared.
        """
        found = [f"namespace {name}" for name in namespace_names() if name.startswith(self.run_id)]
        # `ip -o link` lines look like "7: NAME@PEER: <FLAGS> ..." or "1: lo: <...".
        lines = _ip("-o", "link", "show", check=False).stdout.splitlines()
        links = {line.split(": ")[1].split("@")[0] for line in lines if ": " in line}
        return found + [f"link {h.ifname}" for h in self.hosts if h.ifname in links]


def namespace_names() -> list[str]:
    """The names of all named network namespaces (``ip netns list``)."""
    listing = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


@dataclass(frozen=True)
class NodeResult:
    """What one node's launcher did."""

    node_rank: int
    returncode: int
    stdout: str
    stderr: str


class LaunchTimeout(RuntimeError):
    """A multi-node launch did not finish in time; message has output tails."""


_PROXY_VARS = {"http_proxy", "https_proxy", "grpc_proxy", "all_proxy", "no_proxy"}


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")


def _killpg(p: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def oneflow_launch_command(
    program: Sequence[str],
    *,
    nnodes: int,
    node_rank: int,
    nproc_per_node: int,
    master_addr: str,
    master_port: int,
    python: str = sys.executable,
) -> list[str]:
    """One node's ``python -m oneflow.distributed.launch`` command line.

    ``program`` is what follows the launcher's flags: a script and its
    arguments, or ``["-m", "package", ...]``.
    """
    return [
        python, "-m", "oneflow.distributed.launch",
        "--nnodes", str(nnodes), "--node_rank", str(node_rank),
        "--nproc_per_node", str(nproc_per_node),
        "--master_addr", master_addr, "--master_port", str(master_port),
        *program,
    ]  # fmt: skip


def run_on_hosts(
    hosts: Sequence[Host],
    commands: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300.0,
    failure_grace: float = 10.0,
) -> list[NodeResult]:
    """Run ``commands[i]`` in ``hosts[i]``, all at once, as one bounded job.

    All nodes share one overall ``timeout``; on expiry every node's process
    group is killed and :class:`LaunchTimeout` raised. If a node fails, the
    others get ``failure_grace`` seconds before being killed (a OneFlow peer
    usually hangs forever otherwise); the results then show who failed.

    ``env`` (default: ours) is passed through minus proxy variables: OneFlow's
    gRPC honours ``http_proxy`` and would hang trying to reach a proxy the
    namespaces have no route to.
    """
    if len(commands) != len(hosts):
        raise ValueError(f"{len(commands)} commands for {len(hosts)} hosts")
    env = {k: v for k, v in (os.environ if env is None else env).items()
           if k.lower() not in _PROXY_VARS}  # fmt: skip
    procs: list[subprocess.Popen[Any]] = []
    timed_out = False
    with contextlib.ExitStack() as files:
        outs = [(files.enter_context(tempfile.TemporaryFile()),
                 files.enter_context(tempfile.TemporaryFile())) for _ in hosts]  # fmt: skip
        deadline = time.monotonic() + timeout
        failed_at: float | None = None
        try:
            for host, argv, (out, err) in zip(hosts, commands, outs, strict=True):
                procs.append(host.popen(argv, env=env, cwd=cwd, stdout=out, stderr=err))
            while time.monotonic() < deadline:
                codes = [p.poll() for p in procs]  # poll all: any() would stop early
                if None not in codes:
                    break
                if failed_at is None and any(codes):
                    failed_at = time.monotonic()
                if failed_at is not None and time.monotonic() > failed_at + failure_grace:
                    break  # a node failed; its peers would wait forever
                time.sleep(0.1)
        finally:
            # Whatever happened, nothing outlives this call: stragglers, the
            # peers of a failed node, orphaned workers, or all on timeout.
            timed_out = any(p.poll() is None for p in procs) and failed_at is None
            for p in procs:
                _killpg(p)
                p.wait()
        results = [
            NodeResult(rank, p.returncode, _read(out), _read(err))
            for rank, (p, (out, err)) in enumerate(zip(procs, outs, strict=True))
        ]
    if timed_out:
        tails = "".join(
            f"\n--- node {r.node_rank} ({hosts[r.node_rank].name}) ---\n"
            f"[stdout]\n{_tail(r.stdout, 10)}\n[stderr]\n{_tail(r.stderr)}"
            for r in results
        )
        raise LaunchTimeout(f"launch on {len(hosts)} hosts did not finish in {timeout:.0f}s{tails}")
    return results


def run_oneflow_launch(
    hosts: Sequence[Host],
    script: str | os.PathLike[str],
    script_args: Sequence[str] = (),
    *,
    nproc_per_node: int = 1,
    master_port: int = 29500,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300.0,
    failure_grace: float = 10.0,
) -> list[NodeResult]:
    """Run ``python -m oneflow.distributed.launch`` once per host, as one job.

    Host 0 is the master. The master port is only used inside host 0's fresh
    namespace, so it cannot clash with anything else on the machine. Timeouts,
    failures and the environment are handled as in :func:`run_on_hosts`.
    """
    program = [os.path.abspath(script), *script_args]
    commands = [
        oneflow_launch_command(
            program,
            nnodes=len(hosts),
            node_rank=rank,
            nproc_per_node=nproc_per_node,
            master_addr=hosts[0].addr,
            master_port=master_port,
            python=python,
        )
        for rank in range(len(hosts))
    ]
    return run_on_hosts(
        hosts, commands, env=env, cwd=cwd, timeout=timeout, failure_grace=failure_grace
    )
