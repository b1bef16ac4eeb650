"""Runner backends: where a server runs (a local process group, or a container)."""

from __future__ import annotations

from servebench.servers.runner.base import HOST, Runner

__all__ = ["HOST", "Runner", "create"]


def create(
    backend: str, cpuset: str | None = None, memory_mb: int | None = None, address: str = HOST, where: str = ""
) -> Runner:
    """The runner of a backend named in the parameters ("local" or "docker"); servers get the CPUs of
    `cpuset` (a local process through its affinity, a container through its cgroup). A local server listens on
    `address` (load hosts reach it there); containers run on the engine of server host `where` ("": here)."""
    if backend == "local":
        from servebench.servers.runner.local import LocalProcessRunner

        return LocalProcessRunner(cpuset, address)
    if backend == "docker":
        from servebench.servers.runner.container import ContainerRunner

        return ContainerRunner(cpuset, memory_mb, where=where)
    raise ValueError(f"unknown backend {backend!r}; known: local, docker")
