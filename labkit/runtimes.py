"""The container runtimes labkit knows, as one table: how to tell one is installed (facts), and
how to make it trust the lab's plain-HTTP registry (a planner). setup-registry plans every
runtime a host has; a new runtime is one more entry.

The inventory's ``hosts[].runtime`` names the runtime the kubelet uses there: it must be
installed (doctor and the wait diagnosis look at that one). The registry host pushes with docker,
so docker must be there too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from labkit.errors import OperationError
from labkit.facts.base import Fact
from labkit.facts.containerd import ContainerdConfig, ContainerdVersion, HostsToml
from labkit.facts.docker import DaemonJson, DefaultDocker, DockerUnit, SysconfigDocker
from labkit.operations import containerd as containerd_ops
from labkit.operations import docker as docker_ops
from labkit.runner import Step


@dataclass(frozen=True)
class Runtime:
    name: str
    facts: Callable[[str], dict[str, Fact]]                 # registry address -> facts
    installed: Callable[[dict], bool]                        # facts -> is it on the host?
    trust: Callable[[str, dict], Iterator]                   # (registry address, facts) -> changes
    install_hint: str


RUNTIMES = (
    Runtime("docker",
            lambda registry: {"daemon_json": DaemonJson(), "unit": DockerUnit(), "sysconfig": SysconfigDocker(),
                              "default": DefaultDocker()},
            lambda f: f["unit"]["exists"],
            lambda registry, f: docker_ops.docker_trust(registry=registry, daemon_json=f["daemon_json"],
                                                         unit=f["unit"], sysconfig=f["sysconfig"],
                                                         default=f["default"]),
            "install docker (docker.io on Debian/Ubuntu, docker-ce or moby-engine on RHEL)"),
    Runtime("containerd",
            lambda registry: {"config": ContainerdConfig(), "major": ContainerdVersion(), "hosts": HostsToml(registry)},
            lambda f: f["major"] is not None,
            lambda registry, f: containerd_ops.containerd_trust(registry=registry, config=f["config"],
                                                                 major=f["major"], hosts=f["hosts"]),
            "install containerd (`invoke setup-cluster` does it when kubernetes.cluster.create is set)"),
)


def trust_steps(host, registry: str, *, pushes: bool) -> list[Step]:
    """One step per known runtime: it trusts ``registry`` where the runtime is installed, changes
    nothing where it is not, and fails where the inventory needs it (the kubelet's runtime; docker
    on the registry host, which pushes)."""
    steps = []
    for runtime in RUNTIMES:
        needed_by = [why for why, needed in (
            (f"hosts[{host.name}].runtime says the kubelet uses it", host.runtime == runtime.name),
            ("the registry host pushes the images with it", pushes and runtime.name == "docker")) if needed]

        def plan(f, runtime=runtime, needed_by=needed_by):
            if runtime.installed(f):
                yield from runtime.trust(registry, f)
            elif needed_by:
                raise OperationError(f"{runtime.name} is not installed on {host.name}, but "
                                     f"{' and '.join(needed_by)}: {runtime.install_hint}")
        steps.append(Step(f"{runtime.name} trusts registry", runtime.facts(registry), plan))
    return steps
