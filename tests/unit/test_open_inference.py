"""The Open Inference Protocol (KServe v2) as servebench speaks it: the harness's encoding of rows and decoding
of answers (servers/contract.py), and the servers' shared core (servers/_common/servebench_model.py) reading
that encoding back, so the harness and every v2 server built on the core agree on the wire. No server runs:
the core is imported here as each server imports it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from servebench.servers import contract

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "servers" / "_common"))
import servebench_model as core

V2 = contract.wire("open-inference-v2", "model")


def test_positional_rows_travel_as_one_fp32_matrix_asking_for_both_outputs() -> None:
    body = json.loads(V2.encode([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]))
    assert V2.predict_path == "/v2/models/model/infer"
    assert body == {
        "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]}],
        "outputs": [{"name": "predictions"}, {"name": "probabilities"}],
    }


def test_named_rows_travel_as_one_tensor_per_column_with_strings_as_bytes() -> None:
    rows = [{"age": 31.0, "plan": "pro"}, {"age": 40.5, "plan": "free"}]
    body = json.loads(V2.encode(rows, classifier=False))
    assert body["inputs"] == [
        {"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [31.0, 40.5]},
        {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": ["pro", "free"]},
    ]
    assert body["parameters"] == {"content_type": "pd"}  # MLServer reads the columns as a table
    assert body["outputs"] == [{"name": "predictions"}]  # a regressor has no probabilities to ask for


def test_a_servers_own_output_names_are_asked_for_and_read_back() -> None:
    mlserver = contract.wire("open-inference-v2", "model", ["predict", "predict_proba"])
    assert json.loads(mlserver.encode([[0.0]]))["outputs"] == [{"name": "predict"}, {"name": "predict_proba"}]
    answer = {
        "model_name": "model",
        "outputs": [
            {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [[0.25, 0.75], [0.9, 0.1]]},
            {"name": "predict", "shape": [2, 1], "datatype": "INT64", "data": [1, 0]},
        ],
    }
    assert mlserver.to_contract(answer) == {"predictions": [1, 0], "probabilities": [[0.25, 0.75], [0.9, 0.1]]}


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"error": "model not ready"}, "'predictions' should be a list of 2"),
        ({"outputs": [{"name": "predictions", "shape": [2], "datatype": "INT64", "data": [1, 0]}]}, "'probabilities'"),
        (
            {
                "outputs": [
                    {"name": "predictions", "shape": [2], "data": [1, 0]},
                    {"name": "probabilities", "shape": [2, 3], "data": [0.5, 0.5, 0.0, 1.0, 0.0, 0.0]},
                ]
            },
            "a probability row should have 2 values",
        ),
        (
            {
                "outputs": [
                    {"name": "predictions", "shape": [2], "data": [1, 0]},
                    {"name": "probabilities", "shape": [2, 2], "data": [0.5, 0.5, 1.0]},
                ]
            },
            "'probabilities' should be a list of 2",
        ),
        ([1, 2], "not a JSON object"),
    ],
)
def test_an_answer_that_does_not_fit_is_explained(answer: Any, problem: str) -> None:
    assert problem in (contract.check_answer(V2.to_contract(answer), 2, [0, 1]) or "")


def test_string_labels_come_back_as_they_are() -> None:
    answer = {
        "outputs": [
            {"name": "predictions", "shape": [1], "datatype": "BYTES", "data": ["churn"]},
            {"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": [0.8, 0.2]},
        ]
    }
    assert contract.check_answer(V2.to_contract(answer), 1, ["churn", "stay"]) is None


def test_other_protocols_and_paths() -> None:
    assert contract.wire().encode([[1.0]]) == contract.encode_request([[1.0]])
    assert contract.wire(predict_path="/predictions/model").predict_path == "/predictions/model"
    with pytest.raises(ValueError, match="unknown protocol"):
        contract.wire("grpc")


# --- the servers' shared core reads what the harness sends ------------------------------------------------


@pytest.fixture(scope="module")
def predictors(exports: dict[str, Any]) -> dict[str, core.Predictor]:
    return {
        name: core.Predictor(str(exports[name].dir / "model.onnx"), str(exports[name].meta_path)) for name in ["lr"]
    }


def test_the_core_answers_the_v2_encoding_as_it_answers_the_contract(predictors: dict[str, core.Predictor]) -> None:
    predictor = predictors["lr"]
    meta = predictor.meta
    rows = meta["samples"]["inputs"]
    v1 = orjson.loads(predictor.predict(predictor.parse(contract.encode_request(rows))))
    v2 = orjson.loads(predictor.answer_v2(predictor.run(predictor.parse_v2(V2.encode(rows))), "req-1"))
    assert v2["id"] == "req-1" and v2["model_name"] == "model"
    assert [o["datatype"] for o in v2["outputs"]] == ["INT64", "FP32"]
    assert V2.to_contract(v2) == v1
    assert contract.compare_with_reference(V2.to_contract(v2), meta) is None


def _tensor(name: str = "input", shape: Any = (1, 30), datatype: str = "FP32", data: Any = None) -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": [0.5] * 30 if data is None else data}


HOSTILE = [
    (b"{not json", 400, "not valid JSON"),
    (b'{"instances": [[1]]}', 400, "expected a JSON object"),
    (b'{"inputs": []}', 422, "non-empty list"),
    (b'{"inputs": {"name": "input"}}', 422, "non-empty list"),
    (orjson.dumps({"inputs": ["x"]}), 422, "inputs[0] must be an object"),
    (orjson.dumps({"inputs": [_tensor(name="x")]}), 422, "missing ['input']; unknown ['x']"),
    (orjson.dumps({"inputs": [_tensor(), _tensor()]}), 422, "given twice"),
    (orjson.dumps({"inputs": [_tensor(shape=[1, 29])]}), 422, "do not fill shape"),
    (orjson.dumps({"inputs": [_tensor(shape=[30])]}), 422, "shape [rows, 30]"),
    (orjson.dumps({"inputs": [_tensor(shape=[1, -30])]}), 422, "non-negative integers"),
    (orjson.dumps({"inputs": [_tensor(shape="1,30")]}), 422, "non-negative integers"),
    (orjson.dumps({"inputs": [_tensor(datatype="FP8")]}), 422, "not a number type or BYTES"),
    (orjson.dumps({"inputs": [_tensor(datatype="BYTES", data=["a"] * 30)]}), 422, "must be numbers, not BYTES"),
    (orjson.dumps({"inputs": [_tensor(data=["1"] * 30)]}), 422, "FP32 data must be numbers"),
    (orjson.dumps({"inputs": [_tensor(data=[True] * 30)]}), 422, "FP32 data must be numbers"),
    (orjson.dumps({"inputs": [_tensor(data=[1e39] * 30)]}), 422, "finite numbers within float32 range"),
    (orjson.dumps({"inputs": [_tensor(data="0.5")]}), 422, "data must be a list"),
    (orjson.dumps({"inputs": [_tensor(shape=[0, 30], data=[])]}), 422, "1 to 1024 rows, not 0"),
    (orjson.dumps({"inputs": [_tensor(shape=[1025, 30], data=[0.5] * 30 * 1025)]}), 413, "more than 30720 values"),
    (orjson.dumps({"inputs": [_tensor(data=[[[[[[[[[[[0.5]]]]]]]]]]] * 30)]}), 422, "nests deeper"),
]


@pytest.mark.parametrize(("body", "status", "message"), HOSTILE)
def test_the_core_refuses_hostile_v2_bodies_saying_why(
    predictors: dict[str, core.Predictor], body: bytes, status: int, message: str
) -> None:
    with pytest.raises(core.BadRequest) as refused:
        predictors["lr"].parse_v2(body)
    assert refused.value.status == status and message in refused.value.message


def test_nested_data_and_column_vectors_are_accepted(predictors: dict[str, core.Predictor]) -> None:
    rows = predictors["lr"].meta["samples"]["inputs"][:2]
    feed = predictors["lr"].parse_v2(orjson.dumps({"inputs": [_tensor(shape=[2, 30], data=rows)]}))
    assert isinstance(feed, np.ndarray) and feed.shape == (2, 30) and feed.dtype == np.float32
