import pytest

from servebench.base import placement
from servebench.config.params import ParamsError, parse


def test_auto_splits_a_machine_of_four_cpus_or_more_in_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "machine_cpus", lambda: (0, 1, 2, 3))
    where = placement.resolve("auto")
    assert where.server_cpus == (0, 1) and where.loadgen_cpus == (2, 3)
    assert where.params() == {"cpu_split": "auto", "server_cpus": "0,1", "loadgen_cpus": "2,3"}
    assert where.loadgen_cores(1) == 1 and where.loadgen_cores(4) == 2
    assert placement.resolve("auto", cpuset="3").loadgen_cpus == (0, 1, 2)  # a container's cpuset: the rest


def test_auto_leaves_a_small_machine_unpinned_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "machine_cpus", lambda: (0, 1))
    where = placement.resolve("auto")
    assert where.server_cpus == () and where.loadgen_cpus == () and "too few to split" in where.note
    assert where.params()["server_cpus"] == "all" and where.loadgen_cores(2) == 2
    assert placement.resolve("1:0") == placement.Placement("1:0", (1,), (0,))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"load": "open"}, "load 'open' needs a rate"),
        ({"rate": 100.0}, "rate applies to load 'open'"),
        ({"cpu_split": "0:0"}, "server and load generator CPUs overlap ([0])"),
        ({"cpu_split": "0:99"}, "cpu_split '0:99': this machine has no CPU [99]"),
        ({"cpu_split": "half"}, "cpu_split: String should match pattern"),
        ({"repeats": 0}, "repeats: Input should be greater than or equal to 1"),
        ({"slo_p99_ms": 0}, "slo_p99_ms: Input should be greater than 0"),
        ({"backend": "docker", "cpuset": "0", "cpu_split": "1:0"}, "name different server CPUs"),
    ],
)
def test_bad_measurement_params_are_rejected_naming_the_field(raw: dict, message: str) -> None:
    with pytest.raises(ParamsError, match="invalid benchmark parameters") as err:
        parse({"frameworks": ["fastapi"], **raw})
    assert message in str(err.value)


def test_open_loop_and_capacity_params_are_accepted() -> None:
    assert parse({"load": "open", "rate": 250.0}).rate == 250.0
    assert parse({"capacity": True, "slo_p99_ms": 50.0}).capacity is True
