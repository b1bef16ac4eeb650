import pytest

from servebench.config.params import (
    NIGHTLY_FRAMEWORKS,
    BenchmarkParams,
    ParamsError,
    json_schemas,
    parse,
)


def test_defaults_are_valid() -> None:
    params = parse({})
    assert params == BenchmarkParams()
    assert params.frameworks == list(NIGHTLY_FRAMEWORKS) and params.models == ["lr", "mlp", "gbdt"]
    assert "cpp-crow" not in params.frameworks  # needs Crow's source, which a fresh machine cannot fetch


@pytest.mark.parametrize(
    ("raw", "field", "detail"),
    [
        ({"workers": [0]}, "workers.0", "greater than or equal to 1"),
        ({"users": [-5]}, "users.0", "greater than or equal to 1"),
        ({"duration": 0}, "duration", "greater than 0"),
        ({"duration": -1.5}, "duration", "greater than 0"),
        ({"warmup": -1}, "warmup", "greater than or equal to 0"),
        ({"spawn_rate": 0}, "spawn_rate", "greater than 0"),
        ({"frameworks": ["fastapi", "nope"]}, "frameworks", "unknown framework(s) ['nope']"),
        ({"models": ["resnet"]}, "models", "resnet: not a model: expected a recipe (lr, mlp, gbdt)"),
        (
            {"models": ["models:/churn"]},
            "models",
            "a registry URI is models:/<name>/<version> or models:/<name>@<alias>",
        ),
        ({"models": ["models:/churn/3", "models:/churn/3"]}, "models", "two entries name the same model"),
        ({"batch_sizes": [0]}, "batch_sizes.0", "greater than or equal to 1"),
        ({"payload": ["a.csv", "b.csv"]}, "params", "with several payload files, each is <model>=<file>"),
        ({"payload": ["xgb=a.csv"]}, "params", "xgb is not one of the models"),
        ({"duration": "30"}, "duration", "valid number"),
        ({"workers": ["2"]}, "workers.0", "valid integer"),
        ({"workers": [1.5]}, "workers.0", "valid integer"),
        ({"workers": [True]}, "workers.0", "valid integer"),
        ({"frameworks": "fastapi"}, "frameworks", "valid list"),
        ({"workers": []}, "workers", "at least 1 item"),
        ({"workers": [2, 2]}, "workers", "repeated"),
        ({"wokers": [2]}, "wokers", "Extra inputs are not permitted"),
    ],
)
def test_invalid_params_name_the_field(raw: dict, field: str, detail: str) -> None:
    with pytest.raises(ParamsError) as err:
        parse(raw)
    message = str(err.value)
    assert f"{field}:" in message and detail in message, message


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ParamsError) as err:
        parse({"workers": [0], "duration": 0})
    assert "workers.0:" in str(err.value) and "duration:" in str(err.value)


def test_json_schemas_enumerate_known_choices() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(BenchmarkParams.model_fields)
    frameworks = schemas["frameworks"]["items"]["enum"]
    assert {"broken", "fastapi", "fastapi-gunicorn", "flask", "wrong"} <= set(frameworks)  # fixtures are on the path
    assert frameworks == sorted(frameworks) and "_common" not in frameworks
    assert "enum" not in schemas["models"]["items"] and "examples" not in schemas["models"]  # one entry per line
    assert "gbdt: Gradient-boosted trees" in schemas["models"]["description"]
    # one schema with a list of types (Airflow's form picks its widget from `type`; anyOf gave it none)
    assert schemas["workers"]["items"] == {"type": ["integer", "string"], "minimum": 1, "pattern": "^auto$"}
    assert schemas["rate"]["type"] == ["number", "null"] and schemas["memory_mb"]["type"] == ["integer", "null"]
    assert schemas["frameworks"]["examples"] == frameworks  # a multi-select
    assert schemas["duration"]["exclusiveMinimum"] == 0


def test_auto_workers_follow_gunicorns_rule_and_bad_counts_say_what_is_allowed(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert parse({"workers": [1, "auto"]}).worker_counts == [1, 5]
    assert parse({"workers": [5, "auto"]}).worker_counts == [5]  # the same count runs once
    with pytest.raises(ParamsError) as err:
        parse({"workers": ["many"]})
    assert "workers.0: Input should be a valid integer (got 'many') or Input should be 'auto' (got 'many')" in str(
        err.value
    )


def test_soak_is_a_run_of_its_own() -> None:
    with pytest.raises(ParamsError, match="soak_minutes and capacity are two different runs"):
        parse({"soak_minutes": 30, "capacity": True})
    assert parse({"soak_minutes": 30}).soak_minutes == 30
