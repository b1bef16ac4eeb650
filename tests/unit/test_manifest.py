from pathlib import Path

import pytest

from servebench import manifest
from servebench.manifest import ManifestError

REPO = Path(__file__).resolve().parents[2]
VALID = """
name = "{name}"
language = "python"
model_format = "joblib"
start = ["{{python}}", "-m", "server", "--port", "{{port}}", "--workers", "{{workers}}"]
"""


def write_server(root: Path, name: str, text: str, requirements: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.toml").write_text(text)
    if requirements:
        (folder / "requirements.txt").write_text("")
    return folder


@pytest.mark.parametrize("name", ["fastapi", "flask"])
def test_shipped_manifests_are_valid(name: str) -> None:
    loaded = manifest.load(REPO / "servers" / name)
    assert loaded.name == name and loaded.protocol == "servebench-v1"
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
    with pytest.raises(ManifestError, match="requirements: .*requirements.txt does not exist"):
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
