from pathlib import Path
from typing import get_args

import pytest

from servebench.servers import build, manifest
from servebench.servers.manifest import ManifestError, Protocol

REPO = Path(__file__).resolve().parents[2]
VALID = """
name = "{name}"
language = "python"
model_format = "joblib"
requirements = "requirements.txt"
start = ["{{python}}", "-m", "server", "--port", "{{port}}", "--workers", "{{workers}}"]
"""


def write_server(root: Path, name: str, text: str, requirements: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.toml").write_text(text)
    if requirements:
        (folder / "requirements.txt").write_text("")
    return folder


def test_shipped_manifests_are_valid(shipped_server: str) -> None:
    loaded = manifest.load(REPO / "servers" / shipped_server)
    assert loaded.name == shipped_server and loaded.protocol in get_args(Protocol)
    assert any("{workers}" in part for part in loaded.start) and any("{port}" in part for part in loaded.start)


def test_a_valid_manifest_loads(tmp_path: Path) -> None:
    loaded = manifest.load(write_server(tmp_path, "mine", VALID.format(name="mine")))
    assert loaded.health_path == "/health" and loaded.start_timeout_s == 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.format(name="mine").replace('language = "python"', ""), "language: Field required"),
        (VALID.format(name="mine").replace("{port}", "{prot}"), "start: Value error, unknown placeholder {prot}"),
        (VALID.format(name="mine") + 'colour = "blue"\n', "colour: Extra inputs are not permitted"),
        (VALID.format(name="mine") + "start_timeout_s = 0\n", "start_timeout_s: Input should be greater than 0"),
        (VALID.format(name="other"), "name: 'other' must equal the folder's name 'mine'"),
        ("name = [", "not valid TOML"),
    ],
)
def test_malformed_manifests_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    folder = write_server(tmp_path, "mine", text)
    with pytest.raises(ManifestError) as err:
        manifest.load(folder)
    assert str(folder / "manifest.toml") in str(err.value) and expected in str(err.value), str(err.value)


def test_missing_requirements_file_is_named(tmp_path: Path) -> None:
    folder = write_server(tmp_path, "mine", VALID.format(name="mine"), requirements=False)
    with pytest.raises(ManifestError, match=r"requirements: .*requirements\.txt does not exist"):
        manifest.load(folder)


def test_search_path_first_folder_wins_and_private_folders_are_skipped(tmp_path: Path, monkeypatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_server(first, "mine", VALID.format(name="mine"))
    write_server(second, "mine", VALID.format(name="mine"))
    write_server(second, "theirs", VALID.format(name="theirs"))
    write_server(second, "_common", VALID.format(name="_common"))
    monkeypatch.setenv("SERVEBENCH_SERVERS_PATH", f"{first}:{second}")
    assert manifest.discover() == {"mine": first / "mine", "theirs": second / "theirs"}
    with pytest.raises(ManifestError, match="unknown framework 'nope'; known: \\['mine', 'theirs'\\]"):
        manifest.get("nope")


def test_native_servers_need_no_requirements_and_python_servers_do(tmp_path: Path) -> None:
    native = VALID.format(name="native").replace('language = "python"', 'language = "cpp"')
    native = native.replace('requirements = "requirements.txt"\n', 'sources = ["../src"]\nbuild = [["make"]]\n')
    (tmp_path / "src").mkdir()
    loaded = manifest.load(write_server(tmp_path, "native", native, requirements=False))
    assert loaded.requirements_path is None and loaded.source_paths == [(tmp_path / "src").resolve()]
    no_reqs = VALID.format(name="mine").replace('requirements = "requirements.txt"\n', "")
    with pytest.raises(ManifestError, match="a Python server needs a requirements file"):
        manifest.load(write_server(tmp_path, "mine", no_reqs))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('sources = ["../nowhere"]\n', "sources: .*nowhere does not exist"),
        ("prepare = [[]]\n", "prepare: Value error, a command must not be empty"),
        ('prepare = [["{python}", "{model}"]]\n', "prepare: Value error, unknown placeholder {model}"),
        ('model_format = "pickle"\n', "model_format: Input should be 'joblib', 'onnx' or 'weights'"),
        ("max_body_bytes = 0\n", "max_body_bytes: Input should be greater than 0"),
        ('max_body_bytes = "1M"\n', "max_body_bytes: Input should be a valid integer"),
    ],
)
def test_new_fields_are_checked(tmp_path: Path, extra: str, expected: str) -> None:
    text = VALID.format(name="mine").replace(
        'model_format = "joblib"\n', "" if "model_format" in extra else 'model_format = "joblib"\n'
    )
    with pytest.raises(ManifestError, match=expected):
        manifest.load(write_server(tmp_path, "mine", text + extra))


def test_body_limit_defaults_to_1_mib_and_reaches_every_server(tmp_path: Path) -> None:
    """Python servers read the limit from their environment, native ones take it as `{max_body_bytes}`."""
    assert manifest.load(write_server(tmp_path, "default", VALID.format(name="default"))).max_body_bytes == 1 << 20
    text = VALID.format(name="small").replace('"{workers}"]', '"{workers}", "--limit", "{max_body_bytes}"]')
    small = manifest.load(write_server(tmp_path, "small", text + "max_body_bytes = 4096\n"))
    built = build.BuiltServer(small, tmp_path / "env", "key")
    values = {**built.values(), "host": "127.0.0.1", "port": 8000, "workers": 1}
    assert [manifest.render(part, values) for part in small.start][-2:] == ["--limit", "4096"]
    assert built.environment(values)["SERVEBENCH_MAX_BODY_BYTES"] == "4096"


def test_native_shipped_servers_take_the_body_limit() -> None:
    for name in ("cpp", "cpp-crow"):
        start = manifest.load(REPO / "servers" / name).start
        assert start[start.index("--max-body-bytes") + 1] == "{max_body_bytes}", name
