from __future__ import annotations

from typing import Any, Iterator

import pytest

from servebench import images


@pytest.fixture(scope="session")
def engine() -> Any:
    """The Docker-compatible engine at DOCKER_HOST; the container tests skip, saying why, without one."""
    try:
        return images.engine()
    except images.ImageError as exc:
        pytest.skip(f"no container engine here: {exc}")


@pytest.fixture
def no_leftover_containers(engine: Any) -> Iterator[None]:
    """Fails the test if a servebench container it started outlives it (and removes it)."""
    before = {c.id for c in engine.containers.list(all=True, filters={"label": f"{images.LABEL}=true"})}
    yield
    after = engine.containers.list(all=True, filters={"label": f"{images.LABEL}=true"})
    leftovers = [c for c in after if c.id not in before]
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"
