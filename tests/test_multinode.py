"""Generated packages across several machines: two network namespaces stand in for two hosts.

The main test builds packages with specc, runs them as 2 nodes x 2 processes with the
multi-node command `python -m PACKAGE --launch-help` prints, in two namespaces joined
by a veth pair (tests/support/netns.py), and checks every rank's output and every
parameter's gradient against the same driver launched as 4 processes on one host:
bit for bit, with the same seeds. The small models are also compared with their
single-process twins inside the multi-node run. Each case is one entry of LAYOUTS:
the 2D MLPs (data=2 x tensor=2, a tensor group per host) and a pipeline=2 x tensor=2
MLP (a stage per host).

Namespaces need Linux, iproute2 and CAP_SYS_ADMIN + CAP_NET_ADMIN (root); elsewhere
these tests are skipped with the reason. Every wait is bounded: a hung node fails its
test after TIMEOUT seconds and nothing outlives the test, namespaces included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import specc
from tests.support.launcher import Launch, launch
from tests.support.netns import (
    LaunchTimeout,
    NodeResult,
    TwoHosts,
    namespace_names,
    netns_unavailable_reason,
    oneflow_launch_command,
    run_on_hosts,
)
from tests.support.paths import CASES, REPO, SPECS

DRIVER = REPO / "tests" / "launch" / "multinode.py"
TIMEOUT = 180  # seconds for one launch, multi-node or not; a launch takes 6-20 s
LAUNCHER = [sys.executable, "-m", "oneflow.distributed.launch"]
# The values a multi-node command leaves to the user; every other flag is fixed.
PER_MACHINE = {"--node_rank", "--master_addr", "--master_port"}


@pytest.fixture(scope="module")
def netns() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def oneflow() -> None:
    if importlib.util.find_spec("oneflow") is None:
        pytest.skip("OneFlow is needed to run generated packages")


@dataclass(frozen=True)
class Spec:
    source: Path | str  # a spec file, or the text of one
    twin: bool = False  # also compare with the single-process twin (small models only)
    local_output_shape: list[int] | None = None  # besides the plan's, when the issue names one


@dataclass(frozen=True)
class Layout:
    """One multi-node run: packages built together and launched as one job."""

    specs: tuple[Spec, ...]
    nodes: int
    nproc_per_node: int
    colocated: str  # "tensor": each tensor-parallel group on one host; "stage": each stage
    help_package: str  # its --launch-help must print the command the test runs


PIPELINE_2X2 = """\
specc: 1
name: mlp_pipeline_2x2
device: cpu
parallel: {data: 1, tensor: 2, pipeline: 2}
inputs:
  - {name: x, shape: [8, 16], split: none}
layers:
  - {kind: linear, name: up1, in_features: 16, out_features: 32, split: col}
  - {kind: gelu}
  - {kind: linear, name: down1, in_features: 32, out_features: 16, split: row}
  - {kind: linear, name: up2, in_features: 16, out_features: 32, split: col}
  - {kind: gelu}
  - {kind: linear, name: down2, in_features: 32, out_features: 16, split: row}
"""

LAYOUTS = [
    # The case: the built 2D MLP, data=2 x tensor=2, node 0 holding ranks 0, 1
    # (one tensor group) and node 1 ranks 2, 3; with the small 2D MLP for the twin check.
    pytest.param(
        Layout(
            specs=(
                Spec(SPECS / "huge_mlp_2d.yaml", local_output_shape=[16, 1024]),
                Spec(CASES / "mlp_2d_small.yaml", twin=True),
            ),
            nodes=2,
            nproc_per_node=2,
            colocated="tensor",
            help_package="huge_mlp_2d",
        ),
        id="data2-tensor2",
    ),
    # One pipeline stage per host, each stage one tensor group.
    pytest.param(
        Layout(
            specs=(Spec(PIPELINE_2X2, twin=True),),
            nodes=2,
            nproc_per_node=2,
            colocated="stage",
            help_package="mlp_pipeline_2x2",
        ),
        id="pipeline2-tensor2",
    ),
]


@dataclass
class Built:
    names: list[str]  # package names, in the layout's order
    plans: dict[str, dict]  # package name -> `specc plan --json`
    arguments: list[str]  # the driver's arguments


def build(layout: Layout, out: Path) -> Built:
    """Build every spec of the layout into `out`, with its plan next to it."""
    plans, arguments = {}, []
    for index, spec in enumerate(layout.specs):
        if isinstance(spec.source, Path):
            path = spec.source
        else:
            path = out / f"inline_{index}.yaml"
            path.write_text(spec.source, encoding="utf-8")
        result = specc("build", str(path), "-o", str(out))
        assert result.code == 0, result.stderr
        plan_run = specc("plan", "--json", str(path))
        assert plan_run.code == 0, plan_run.stderr
        plan = json.loads(plan_run.stdout)
        name = plan["package"]
        plans[name] = plan
        plan_file = out / f"{name}.plan.json"
        plan_file.write_text(plan_run.stdout, encoding="utf-8")
        arguments.append(f"{name}={plan_file}" if spec.twin else name)
    return Built(list(plans), plans, arguments)


def package_env(directory: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(directory)}


def launch_help(package: str, directory: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", package, "--launch-help"],
        cwd=directory,
        env=package_env(directory),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def machine_commands(help_text: str) -> dict[tuple[int, int], str]:
    """The multi-node commands of --launch-help, by (machines, processes per machine)."""
    found = re.findall(
        r"^On (\d+) machines x (\d+) processes, .*:\n  (.+)$", help_text, re.MULTILINE
    )
    return {(int(nodes), int(per_node)): command for nodes, per_node, command in found}


def split_command(argv: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """A launcher command as (interpreter and launcher, its --flags, the program)."""
    head, rest = argv[:3], argv[3:]
    flags = {}
    while rest and rest[0].startswith("--"):
        flags[rest[0]], rest = rest[1], rest[2:]
    return head, flags, rest


def assert_help_command_is_the_one_run(printed: str, run: list[str], package: str) -> None:
    """Same launcher, same flags; only the per-machine values and the program differ."""
    help_head, help_flags, help_program = split_command(shlex.split(printed))
    run_head, run_flags, run_program = split_command(run)
    assert help_head == ["python", *LAUNCHER[1:]], printed
    assert run_head == LAUNCHER, run
    assert help_flags.keys() == run_flags.keys(), (printed, run)
    for flag, value in help_flags.items():
        if flag not in PER_MACHINE:
            assert run_flags[flag] == value, (flag, printed, run)
    assert help_flags["--node_rank"] == "$NODE_RANK"
    assert help_flags["--master_addr"] == "$MASTER_ADDR"
    assert help_flags["--master_port"].isdigit()
    # The program: the package's own entry point, which the driver runs first.
    assert help_program == ["-m", package], printed
    assert run_program[0] == str(DRIVER)
    assert package in [argument.partition("=")[0] for argument in run_program[1:]], run


def records_of(stdout: str) -> list[dict]:
    """The driver's records, one per (package, rank), each with its tensors gathered in."""
    records: dict[tuple[str, int], dict] = {}
    tensors = []
    for line in Launch(0, stdout, "").records():
        if "tensor" in line:
            tensors.append(line)
        else:
            key = (line["package"], line["rank"])
            assert key not in records, f"{key} reported twice"
            records[key] = {**line, "tensors": {}}
    for line in tensors:
        found = records[line.pop("package"), line.pop("rank")]["tensors"]
        name = line.pop("tensor")
        assert name not in found, f"{name} reported twice"
        found[name] = line
    return list(records.values())


def entry_point_shapes(stdout: str) -> set[tuple[int, str]]:
    """What `python -m PACKAGE`'s main printed: (rank, local output shape)."""
    pattern = r"rank (\d+)(?: \(stage \d+ of \d+\))?: local output shape (\[[\d, ]+\])"
    return {(int(rank), shape) for rank, shape in re.findall(pattern, stdout)}


def output_ranks(plan: dict) -> set[int]:
    """The ranks holding the output: those of the last pipeline stage."""
    stages = plan["mesh"]["stages"]
    return flatten(stages[plan["output_stage"]]["ranks"])


def flatten(ranks: list | int) -> set[int]:
    """The ranks of a (nested) list, as a plan writes a stage's mesh."""
    return {ranks} if isinstance(ranks, int) else set().union(*map(flatten, ranks))


def groups(plan: dict, colocated: str) -> list[set[int]]:
    """The rank groups that must each share one host: tensor-parallel groups or stages.

    Ranks are laid out stage-major, rank = stage * data * tensor + d * tensor + t.
    """
    mesh = plan["mesh"]
    data, tensor, pipeline = mesh["data"], mesh["tensor"], mesh.get("pipeline", 1)
    stages = [set(range(s * data * tensor, (s + 1) * data * tensor)) for s in range(pipeline)]
    assert [flatten(stage["ranks"]) for stage in mesh["stages"]] == stages
    if colocated == "stage":
        return stages
    firsts = [min(stage) + d * tensor for stage in stages for d in range(data)]
    return [set(range(first, first + tensor)) for first in firsts]


def differences(got: dict, want: dict) -> list[str]:
    """Why two fingerprinted runs differ, tensor by tensor."""
    lines = []
    for name in sorted(got.keys() | want.keys()):
        a, b = got.get(name), want.get(name)
        if a is None or b is None:
            lines.append(f"{name}: only in one run")
        elif a != b:
            lines.append(f"{name}: sum {a['sum']} != {b['sum']}, {a['shape']} vs {b['shape']}")
    return lines


def node_ranks(layout: Layout, node: int) -> range:
    """The launcher numbers ranks node by node: RANK = nproc_per_node * node_rank + local."""
    return range(node * layout.nproc_per_node, (node + 1) * layout.nproc_per_node)


@dataclass
class TwoHostRun:
    results: list[NodeResult]
    master: str  # host 0's address
    leftovers: list[str]  # what of the namespaces and links remained after the run


def run_on_two_hosts(layout: Layout, program: list[str], help_command: str, cwd: Path):
    """The multi-node launch, with the flags of `help_command`, in two fresh namespaces."""
    two_hosts = TwoHosts()
    names = {host.name for host in two_hosts.hosts}
    assert not names & set(namespace_names())  # this run's own names
    with two_hosts as hosts:
        assert names <= set(namespace_names())
        master = hosts[0].addr
        commands = [
            oneflow_launch_command(
                program,
                nnodes=layout.nodes,
                node_rank=node,
                nproc_per_node=layout.nproc_per_node,
                master_addr=master,
                master_port=29500,  # inside host 0's own namespace: cannot clash
            )
            for node in range(layout.nodes)
        ]
        for command in commands:
            assert_help_command_is_the_one_run(help_command, command, layout.help_package)
        results = run_on_hosts(hosts, commands, env=package_env(cwd), cwd=cwd, timeout=TIMEOUT)
    return TwoHostRun(results, master, two_hosts.leftovers())


def collect(layout: Layout, built: Built, run: TwoHostRun) -> dict[tuple[str, int], dict]:
    """Every node's records, checking each node ran its own ranks in its own host."""
    own_netns = os.readlink("/proc/self/ns/net")
    records = {}
    for node in run.results:
        explain = (
            f"node {node.node_rank}: exit {node.returncode}\n"
            f"--- stdout\n{node.stdout[-3000:]}\n--- stderr\n{node.stderr[-5000:]}"
        )
        assert node.returncode == 0, explain
        ranks = node_ranks(layout, node.node_rank)
        found = records_of(node.stdout)
        assert sorted((r["package"], r["rank"]) for r in found) == sorted(
            (package, rank) for package in built.plans for rank in ranks
        ), explain
        # The package's own entry point ran on this node's ranks, with the plan's shapes.
        assert entry_point_shapes(node.stdout) == {
            (rank, str(plan["output"]["local_shape"]))
            for plan in built.plans.values()
            for rank in output_ranks(plan) & set(ranks)
        }, explain
        for record in found:
            assert record["netns"] != own_netns  # really inside a fake host
            assert record["launcher"]["MASTER_ADDR"] == run.master
            records[record["package"], record["rank"]] = record
    return records


def check_hosts(layout: Layout, built: Built, records: dict[tuple[str, int], dict]) -> None:
    """One namespace per node; each tensor group (or stage) inside one of them."""
    world = layout.nodes * layout.nproc_per_node
    for package, plan in built.plans.items():
        host = {rank: records[package, rank]["netns"] for rank in range(world)}
        assert len(set(host.values())) == layout.nodes, host
        for node in range(layout.nodes):
            assert len({host[rank] for rank in node_ranks(layout, node)}) == 1, host
        for group in groups(plan, layout.colocated):
            assert len({host[rank] for rank in group}) == 1, (layout.colocated, group, host)


@pytest.mark.launcher
@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_hosts_compute_what_one_host_computes(netns, oneflow, layout: Layout, tmp_path):
    built = build(layout, tmp_path)
    world = layout.nodes * layout.nproc_per_node
    assert {plan["mesh"]["world_size"] for plan in built.plans.values()} == {world}
    help_text = launch_help(layout.help_package, tmp_path)
    assert f"--nproc_per_node {world} -m {layout.help_package}\n" in help_text, help_text
    printed = machine_commands(help_text)
    assert (layout.nodes, layout.nproc_per_node) in printed, help_text
    # Only machine counts that keep each tensor-parallel group inside one machine.
    tensor = built.plans[layout.help_package]["mesh"]["tensor"]
    assert all(n * per_node == world and per_node % tensor == 0 for n, per_node in printed)
    program = [str(DRIVER), *built.arguments]

    run = run_on_two_hosts(layout, program, printed[layout.nodes, layout.nproc_per_node], tmp_path)
    assert run.leftovers == [], "namespaces or links outlived the run"
    records = collect(layout, built, run)
    expected = sorted((package, rank) for package in built.plans for rank in range(world))
    assert sorted(records) == expected
    check_hosts(layout, built, records)

    one_host = launch(world, program, pythonpath=[tmp_path], cwd=tmp_path, timeout=TIMEOUT)
    assert one_host.returncode == 0, one_host.explain()
    reference = {(r["package"], r["rank"]): r for r in records_of(one_host.stdout)}
    assert sorted(reference) == expected

    compare(layout, built, records, reference)


def compare(layout: Layout, built: Built, records: dict, reference: dict) -> None:
    """The two-host records against the one-host ones, and against each other."""
    shapes = dict(zip(built.names, [spec.local_output_shape for spec in layout.specs], strict=True))
    seen: dict[tuple[str, str], dict] = {}  # (package, tensor) -> its first fingerprint
    for (package, rank), record in records.items():
        plan, same = built.plans[package], reference[package, rank]
        assert record["world_size"] == len(reference) // len(built.plans)
        assert record["entry_exit"] == 0
        if rank in output_ranks(plan):
            assert record["local_output_shape"] == plan["output"]["local_shape"]
            assert shapes[package] in (None, record["local_output_shape"])
        else:
            assert record["local_output_shape"] is None
        # Bit for bit what one host computes: inputs, output, loss, weights, gradients.
        assert record["tensors"] == same["tensors"], differences(record["tensors"], same["tensors"])
        # Every rank holding a tensor gathered the same whole tensor.
        for name, fingerprint in record["tensors"].items():
            assert seen.setdefault((package, name), fingerprint) == fingerprint, (name, rank)
        # Each parameter here has a gradient, and none is trivially zero.
        weights = {name[7:] for name in record["tensors"] if name.startswith("weight ")}
        grads = {name[5:] for name in record["tensors"] if name.startswith("grad ")}
        assert grads == weights, record["tensors"].keys()
        assert all(record["tensors"][f"grad {name}"]["abs_sum"] > 0 for name in grads)
        # The single-process twin agrees (small models), identically on both runs.
        assert record.get("twin") == same.get("twin")
        if "twin" in record:
            assert record["twin"]["errors"] == [], record["twin"]
    for package in built.plans:
        names = {name for p, name in seen if p == package}
        assert "output" in names and any(name.startswith("grad ") for name in names), names


def test_a_failing_or_hung_node_ends_the_run_in_bounded_time(netns):
    """A failed node's peers are killed after the grace; a hung job at the timeout."""
    two_hosts = TwoHosts()
    with two_hosts as hosts:
        started = time.monotonic()
        results = run_on_hosts(
            hosts, [["sh", "-c", "exit 3"], ["sleep", "600"]], timeout=60, failure_grace=1
        )
        assert time.monotonic() - started < 30
        assert [r.returncode for r in results] == [3, -signal.SIGKILL]
        with pytest.raises(LaunchTimeout, match="did not finish in 1s"):
            run_on_hosts(hosts, [["sleep", "600"], ["sleep", "600"]], timeout=1)
        pids = [_ip_pids(host.name) for host in hosts]
        assert pids == [[], []], pids  # nothing left running inside the hosts
    assert two_hosts.leftovers() == []


def test_namespaces_are_removed_even_after_an_exception(netns):
    two_hosts = TwoHosts()
    names = {host.name for host in two_hosts.hosts}
    with pytest.raises(RuntimeError, match="boom"), two_hosts as hosts:
        assert names <= set(namespace_names())
        # Raised at once: some of these are still on their way into the namespace.
        sleepers = [host.popen(["sleep", "600"]) for host in hosts for _ in range(3)]
        raise RuntimeError("boom")
    assert two_hosts.leftovers() == []
    assert not names & set(namespace_names())
    assert [p.poll() for p in sleepers] == [-signal.SIGKILL] * len(sleepers)


def test_fake_hosts_reach_each_other_and_nothing_else(netns):
    """Each host has lo and its veth end, one /30 route and no default route."""
    with TwoHosts() as hosts:
        for host, peer in (hosts, hosts[::-1]):
            links = host.run(["ip", "-o", "link", "show"], check=True).stdout.splitlines()
            names = sorted(line.split(": ")[1].split("@")[0] for line in links)
            assert names == sorted(["lo", host.ifname]), names
            routes = host.run(["ip", "-4", "route"], check=True).stdout
            assert "default" not in routes and len(routes.splitlines()) == 1, routes
            probe = "import socket, sys; socket.create_connection((sys.argv[1], 9), timeout=5)"
            reply = host.run([sys.executable, "-c", probe, peer.addr], timeout=30)
            assert "ConnectionRefusedError" in reply.stderr  # the peer's kernel answered
            outside = host.run([sys.executable, "-c", probe, "192.0.2.1"], timeout=30)
            assert "Network is unreachable" in outside.stderr, outside.stderr


def _ip_pids(namespace: str) -> list[str]:
    result = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.split()
