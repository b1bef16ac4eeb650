import numpy as np
import pytest

from servebench.servers import contract

CLASSES = [0, 1, 2]
META = {
    "classes": CLASSES,
    "samples": {"inputs": [[0.0], [1.0]], "predictions": [2, 0], "probabilities": [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]},
    "tolerance": {"proba": 1e-5, "rtol": 1e-4, "scale": 1.0},
}
REGRESSOR = {
    "classes": [],
    "samples": {"inputs": [[0.0], [1.0]], "predictions": [150.0, -0.5]},
    "tolerance": {"proba": 1e-5, "rtol": 1e-4, "scale": 100.0},
}


def test_a_correct_answer_passes() -> None:
    answer = {"predictions": [2, 0], "probabilities": [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]}
    assert contract.check_answer(answer, 2, CLASSES) is None
    assert contract.compare_with_reference(answer, META) is None


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ([1, 2], "not a JSON object"),
        ({"predictions": [2]}, "'predictions' should be a list of 2"),
        ({"predictions": [2, 0], "probabilities": [[1, 0, 0]]}, "'probabilities' should be a list of 2"),
        ({"predictions": [2, 7], "probabilities": [[0, 0, 1], [1, 0, 0]]}, "label 7 is not one of"),
        ({"predictions": [2, 0], "probabilities": [[0, 0, 1], [1, 0]]}, "should have 3 values"),
        ({"predictions": [2, 0], "probabilities": [[0, 0, 0.9], [1, 0, 0]]}, "sum to 0.9"),
        ({"predictions": [0, 0], "probabilities": [[0, 0, 1], [1, 0, 0]]}, "label 0 is not the most probable"),
    ],
)
def test_contract_breaches_are_explained(answer: object, problem: str) -> None:
    assert problem in (contract.check_answer(answer, 2, CLASSES) or "")


def test_reference_comparison_finds_the_first_difference() -> None:
    off_by_little = {"predictions": [2, 0], "probabilities": [[0.1 + 4e-6, 0.2 - 4e-6, 0.7], [0.6, 0.3, 0.1]]}
    assert contract.compare_with_reference(off_by_little, META) is None
    off_by_more = {"predictions": [2, 0], "probabilities": [[0.1, 0.2, 0.7], [0.6 + 1e-4, 0.3 - 1e-4, 0.1]]}
    assert "sample input 1 [" in contract.compare_with_reference(
        off_by_more, META
    ) and "probabilities differ by 1.00e-04" in contract.compare_with_reference(off_by_more, META)
    assert (
        contract.compare_with_reference({"predictions": [0], "probabilities": [[0.6, 0.3, 0.1]]}, META, slice(1, 2))
        is None
    )


def test_a_regressor_answers_values_within_its_relative_tolerance() -> None:
    assert contract.compare_with_reference({"predictions": [150.01, -0.505]}, REGRESSOR) is None  # 1e-4 x 100
    assert "value 150.1, reference 150.0" in (
        contract.compare_with_reference({"predictions": [150.1, -0.5]}, REGRESSOR) or ""
    )
    assert "is not a finite number" in (contract.check_answer({"predictions": [1.0, "x"]}, 2, []) or "")


def _meta(inputs: dict, generator: dict) -> dict:
    return {"inputs": inputs, "generator": generator}


POSITIONAL = {"named": False, "columns": [{"name": "f0", "type": "number"}, {"name": "f1", "type": "number"}]}
NAMED = {"named": True, "columns": [{"name": "age", "type": "number"}, {"name": "color", "type": "string"}]}


def test_request_generator_is_seeded_per_stream() -> None:
    meta = _meta(POSITIONAL, {"seed": 7, "columns": [{"normal": [0.0, 1.0]}, {"normal": [10.0, 0.1]}]})
    a, b, other = (
        contract.RequestGenerator(meta, 0, batch=3),
        contract.RequestGenerator(meta, 0, batch=3),
        contract.RequestGenerator(meta, 1, batch=3),
    )
    first = a.instances()
    assert np.asarray(first).shape == (3, 2) and 9 < np.mean([r[1] for r in first]) < 11
    assert first == b.instances()
    assert first != other.instances()
    assert a.bodies(2)[0].startswith(b'{"instances": [[')


def test_named_columns_travel_as_objects_with_categories() -> None:
    meta = _meta(NAMED, {"seed": 1, "columns": [{"normal": [40.0, 5.0]}, {"choice": ["red", "blue"]}]})
    rows = contract.RequestGenerator(meta, 0, batch=50).instances()
    assert all(set(r) == {"age", "color"} and r["color"] in ("red", "blue") for r in rows)
    assert {r["color"] for r in rows} == {"red", "blue"}


def test_a_payload_is_replayed_in_a_seeded_order_per_stream() -> None:
    payload = [{"age": float(i), "color": "red"} for i in range(10)]
    meta = _meta(NAMED, {"seed": 3, "rows": payload})
    one, two = contract.RequestGenerator(meta, 0, batch=5), contract.RequestGenerator(meta, 1, batch=5)
    first = one.instances() + one.instances()
    assert sorted(r["age"] for r in first) == list(range(10))  # every row once per pass, shuffled
    assert [r["age"] for r in first] != list(range(10)) and first[:5] != two.instances()
