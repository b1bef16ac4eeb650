"""Several hosts on this machine (servebench.lab, scripts/lab.sh): each test module gets a lab of its own, taken
down after it and checked to leave no namespace, interface or process behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from servebench import lab as labs


@pytest.fixture(scope="module")
def lab() -> Iterator[Callable[[int], labs.Lab]]:
    """Brings up a lab with N load hosts (once per module) and takes it down afterwards, checking it is gone."""
    if why := labs.why_unavailable():
        pytest.skip(why)
    made: list[labs.Lab] = []

    def up(load_hosts: int = 2) -> labs.Lab:
        if not made:
            made.append(labs.Lab(f"sb{os.getpid() % 100000}").up(load_hosts))
        return made[0]

    yield up
    for lab in made:
        assert lab.wait_all() == [], "every process on the lab's hosts ended by itself"
        lab.down()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert lab.name + "-" not in listed
