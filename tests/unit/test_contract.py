import numpy as np
import pytest

from servebench.servers import contract

CLASSES = [0, 1, 2]
META = {
    "classes": CLASSES,
    "samples": {"inputs": [[0.0], [1.0]], "predictions": [2, 0], "probabilities": [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]},
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


def test_request_generator_is_seeded_per_stream() -> None:
    spec = {"seed": 7, "mean": [0.0, 10.0], "std": [1.0, 0.1], "batch_size": 3}
    a, b, other = (
        contract.RequestGenerator(spec, 0),
        contract.RequestGenerator(spec, 0),
        contract.RequestGenerator(spec, 1),
    )
    first = a.instances()
    assert first.shape == (3, 2)
    np.testing.assert_array_equal(first, b.instances())
    assert not np.array_equal(first, other.instances())
    assert a.bodies(2)[0].startswith(b'{"instances": [[')
