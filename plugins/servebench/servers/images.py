"""Server images for the container backend: one per server and exported model, tagged by content hash.

servebench assembles each build context itself, mirroring the repository so a manifest's commands work
unchanged in the image:

    Dockerfile            the manifest's `container.dockerfile` from docker/ (by default per language)
    requirements.txt      the server's requirements, and constraints.txt (pins for a joblib model)
    extra-ca.crt          $SERVEBENCH_EXTRA_CA_CERT (a proxy's CA for pip in the build stage), or empty
    srv/servers/<name>/   the server's folder, with its private siblings (servers/_common)
    srv/<source>          each of the manifest's `sources`, at its place relative to the servers folder
    srv/model/            the files of the export the server loads, and metadata.json
    srv/env.sh, build.sh, prepare.sh, start.sh, collect.sh
                          the manifest's env and commands, filled with the container's placeholder values
    srv/healthcheck.sh    docker/healthcheck.sh

The tag is `servebench-<server>:<hash of the context and build args>`, so an unchanged server and model
is never rebuilt, and the Engine's layer cache keeps one dependency layer for all models of a server.
A Dockerfile's build arguments can be overridden with SERVEBENCH_BUILD_ARG_<NAME> (e.g. a base image).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from servebench.base import paths
from servebench.models.export import ExportedModel
from servebench.servers import build
from servebench.servers.manifest import Manifest, render

log = logging.getLogger(__name__)

DOCKERFILES = paths.REPO_ROOT / "docker"
DEFAULT_DOCKERFILE = {"python": "server-python.Dockerfile", "cpp": "server-native.Dockerfile"}
CONTAINER_PORT = 8000
SRV = PurePosixPath("/srv")
ENV_DIR = {"python": "/opt/venv", "cpp": "/opt/server"}
WORKERS_FROM_ENV = "\0workers\0"  # stands for the container's $WORKERS in start.sh
BUILD_ARG_PREFIX = "SERVEBENCH_BUILD_ARG_"
LABEL = "servebench.managed"


class ImageError(RuntimeError):
    """A server image could not be built; the message says which step failed and how to fix it."""


def engine(where: str = "") -> Any:
    """A client of the Docker-compatible engine that runs the servers; ImageError saying how to get one.

    `where` is a server host: "" for this machine's engine (DOCKER_HOST, or the default socket), an engine URL
    (tcp://, ssh://, unix://), or the id of an Airflow connection of type docker, read with the Docker
    provider's DockerHook: the engine's URL and TLS files in its extra (`docker_url`, `tls_ca_cert`,
    `tls_client_cert`, `tls_client_key`), and, when it has a login, the registry it logs in to (host, login,
    password), as DockerHook does. Credentials stay in the connection, never in a parameter."""
    import docker

    try:
        if not where:
            client = docker.from_env(timeout=600)  # type: ignore[attr-defined]  # docker-py exports it untyped
        elif "://" in where:
            client = docker.DockerClient(base_url=where, timeout=600)  # type: ignore[attr-defined]  # untyped export
        else:
            client = docker.DockerClient.__new__(docker.DockerClient)  # type: ignore[attr-defined]
            client.api = _hook(where).get_conn()  # DockerClient is a thin front of the APIClient DockerHook makes
        client.ping()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the same thing to the user
        shown = where or os.environ.get("DOCKER_HOST", "the default socket unix:///var/run/docker.sock")
        raise ImageError(
            f"the container backend needs a Docker Engine, and none answers at {shown} ({exc}). Start one and set "
            'DOCKER_HOST, or on a machine without Docker run: eval "$(bash scripts/container-engine.sh start)"'
        ) from None
    return client


def _hook(conn_id: str) -> Any:
    """DockerHook for the engine an Airflow connection names (see `engine`)."""
    try:
        from airflow.providers.docker.hooks.docker import DockerHook
        from airflow.sdk import BaseHook
    except ImportError as exc:
        raise ImageError(
            f"server host {conn_id!r} names an Airflow connection, which needs apache-airflow-providers-docker "
            f"({exc}); outside Airflow give an engine URL (tcp://, ssh://, unix://)"
        ) from None
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    if not extra.get("docker_url"):
        raise ImageError(
            f"Airflow connection {conn_id!r} has no docker_url in its extra: add the server host's engine URL, "
            'e.g. {"docker_url": "tcp://198.18.0.2:2376", "tls_ca_cert": "/certs/ca.pem", ...}'
        )
    tls = DockerHook.construct_tls_config(
        ca_cert=extra.get("tls_ca_cert"),
        client_cert=extra.get("tls_client_cert"),
        client_key=extra.get("tls_client_key"),
    )
    return DockerHook(
        docker_conn_id=conn_id if conn.login else None, base_url=extra["docker_url"], tls=tls, timeout=600
    )


def engine_url(where: str) -> str:
    """The URL of a server host's engine (see `engine`): itself, or the docker_url of the Airflow connection."""
    if not where or "://" in where:
        return where
    from airflow.sdk import BaseHook

    return str(BaseHook.get_connection(where).extra_dejson.get("docker_url", ""))


def server_address(where: str) -> str:
    """The address at which the harness and the load hosts reach a server published by `where`'s engine: the
    engine's host for tcp:// and ssh:// (resolved here), this machine's loopback for a local engine."""
    url = urlsplit(engine_url(where))
    if url.scheme in ("tcp", "ssh", "http", "https") and url.hostname:
        return socket.gethostbyname(url.hostname)
    return "127.0.0.1"


def container_values(manifest: Manifest, model: ExportedModel | None = None) -> dict[str, object]:
    """Placeholder values inside the image (see `build.BuiltServer.values` for a local process)."""
    env_dir = ENV_DIR[manifest.language]
    values: dict[str, object] = {
        "python": f"{env_dir}/bin/python" if manifest.language == "python" else "python3",
        "server_dir": SRV / "servers" / manifest.name,
        "env_dir": env_dir,
        "host": "0.0.0.0",
        "port": CONTAINER_PORT,
        "workers": WORKERS_FROM_ENV,
        "max_body_bytes": manifest.max_body_bytes,
    }
    if model is not None:
        values.update(
            model_path=SRV / "model" / model.path(manifest.model_format).name,
            model_meta=SRV / "model" / model.meta_path.name,
            prepared_dir=SRV / "prepared",
        )
    return values


def _sh(word: str) -> str:
    """One shell word in double quotes; the workers placeholder becomes the container's $WORKERS."""
    quoted = re.sub(r'([\\"$`])', r"\\\1", word)
    return '"' + quoted.replace(WORKERS_FROM_ENV, "${WORKERS}") + '"'


def _script(commands: list[list[str]], values: dict[str, object], exec_last: bool = False) -> str:
    lines = ["set -eu", ". /srv/env.sh", f"cd {_sh(str(values['server_dir']))}"]
    for i, command in enumerate(commands):
        words = " ".join(_sh(render(part, values)) for part in command)
        lines.append(("exec " if exec_last and i == len(commands) - 1 else "") + words)
    return "\n".join(lines) + "\n"


def _copy_tree(src: Path, dst: Path) -> None:
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return
    shutil.copytree(src, dst, ignore=lambda _, names: [n for n in names if build.not_source([n])])


def dockerfile(manifest: Manifest) -> Path:
    path = DOCKERFILES / (manifest.container.dockerfile or DEFAULT_DOCKERFILE[manifest.language])
    if not path.is_file():
        raise ImageError(f"server {manifest.name}: no Dockerfile {path}")
    return path


def assemble_context(manifest: Manifest, model: ExportedModel, ctx: Path) -> None:
    """Write the build context (see the module's docstring) into the empty folder `ctx`."""
    shutil.copy2(dockerfile(manifest), ctx / "Dockerfile")
    requirements = manifest.requirements_path.read_text() if manifest.requirements_path else ""
    (ctx / "requirements.txt").write_text(requirements)
    (ctx / "constraints.txt").write_text(build.constraints_for(manifest))
    extra_ca = os.environ.get("SERVEBENCH_EXTRA_CA_CERT", "")
    (ctx / "extra-ca.crt").write_bytes(Path(extra_ca).read_bytes() if extra_ca else b"")
    srv = ctx / "srv"
    servers_root = manifest.folder.resolve().parent
    for sibling in sorted(servers_root.iterdir()):  # the server and its private helpers (_common)
        if sibling.is_dir() and (sibling.name == manifest.name or sibling.name.startswith("_")):
            _copy_tree(sibling, srv / "servers" / sibling.name)
    for source in manifest.source_paths:
        try:
            relative = source.relative_to(servers_root.parent)
        except ValueError:
            raise ImageError(f"server {manifest.name}: source {source} is outside {servers_root.parent}") from None
        _copy_tree(source, srv / relative)
    for file in model.files_for(manifest.model_format):
        _copy_tree(file, srv / "model" / file.name)
    (srv / "prepared").mkdir()
    values = container_values(manifest, model)
    env = build.server_environment(manifest, values)
    (srv / "env.sh").write_text("".join(f"export {k}={_sh(v)}\n" for k, v in sorted(env.items())))
    (srv / "build.sh").write_text(_script(manifest.build, values))
    (srv / "prepare.sh").write_text(_script(manifest.prepare, values))
    (srv / "start.sh").write_text(_script([manifest.start], values, exec_last=True))
    artifacts = [render(a, values) for a in manifest.container.artifacts]
    (srv / "collect.sh").write_text(
        "set -eu\nmkdir -p /out\n" + "".join(f"cp --parents {_sh(a)} /out/\n" for a in artifacts)
    )
    shutil.copy2(DOCKERFILES / "healthcheck.sh", srv / "healthcheck.sh")
    for path in [ctx, *ctx.rglob("*")]:  # readable by the image's non-root user, whatever the host's umask
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)


def build_args(manifest: Manifest, dockerfile_text: str) -> dict[str, str]:
    """The Dockerfile's arguments: the server's, then SERVEBENCH_BUILD_ARG_<NAME> overrides of any.

    An empty override counts as unset, so docker-compose can pass `${SERVEBENCH_BUILD_ARG_X:-}` through.
    """
    declared = set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile_text, re.M))
    args = {
        "SERVER": manifest.name,
        "HEALTH_PATH": manifest.health_path,
        "BUILD_PACKAGES": " ".join(manifest.container.build_packages),
    }
    args = {k: v for k, v in args.items() if k in declared}
    args.update({name: value for name in declared if (value := os.environ.get(BUILD_ARG_PREFIX + name, ""))})
    return args


def base_images(dockerfile_text: str, args: dict[str, str]) -> dict[str, str | None]:
    """The images the Dockerfile's stages start FROM (stage names left out), with arguments filled in,
    each with the build argument that names it (None for a literal)."""
    defaults = dict(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)", dockerfile_text, re.M))
    values = {**defaults, **args}
    stages: set[str] = set()
    images: dict[str, str | None] = {}
    for ref, stage in re.findall(r"^\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile_text, re.M | re.I):
        arg = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", ref)
        image = values.get(arg.group(1), "") if arg else ref
        if image not in stages:
            images.setdefault(image, arg.group(1) if arg else None)
        if stage:
            stages.add(stage)
    return images


def _context_digest(ctx: Path, args: dict[str, str]) -> str:
    digest = hashlib.sha256(repr(sorted(args.items())).encode())
    for file in sorted(p for p in ctx.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(ctx)}\0{file.stat().st_mode:o}\0".encode() + file.read_bytes())
    return digest.hexdigest()[:12]


def require_base_images(client: Any, manifest: Manifest) -> None:
    """Check that the engine has (or can pull) every image the server's Dockerfile builds on; ImageError
    saying how to provide one that is missing. Run before any work, so a missing image fails at once."""
    import docker.errors

    text = dockerfile(manifest).read_text()
    for image, arg in base_images(text, build_args(manifest, text)).items():
        try:
            client.images.get(image)
            continue
        except docker.errors.ImageNotFound:
            pass
        log.info("server %s: pulling base image %s", manifest.name, image)
        try:
            client.images.pull(image)
        except docker.errors.APIError as exc:
            other = f", or name another image with {BUILD_ARG_PREFIX}{arg}=<image>" if arg else ""
            raise ImageError(
                f"server {manifest.name} needs the image {image}, which the engine neither has nor can pull "
                f"({str(exc).splitlines()[0][:200]}). Provide it: `docker pull {image}` where a registry is "
                f"reachable, then `docker save {image} | docker load` here{other}."
            ) from None


def ensure(client: Any, manifest: Manifest, model: ExportedModel) -> str:
    """The tag of the server's image for `model`, building it when the engine does not have it."""
    import docker.errors

    if "docker" not in manifest.backends:
        raise ImageError(f"server {manifest.name} does not run in a container (backends: {manifest.backends})")
    with tempfile.TemporaryDirectory(prefix=f"servebench-image-{manifest.name}-") as tmp:
        ctx = Path(tmp)
        assemble_context(manifest, model, ctx)
        dockerfile_text = (ctx / "Dockerfile").read_text()
        args = build_args(manifest, dockerfile_text)
        tag = f"servebench-{manifest.name}:{_context_digest(ctx, args)}"
        try:
            client.images.get(tag)
            log.info("server %s: image %s for model %s is up to date", manifest.name, tag, model.name)
            return tag
        except docker.errors.ImageNotFound:
            pass
        require_base_images(client, manifest)
        log.info(
            "server %s: building image %s for model %s (%s)",
            manifest.name,
            tag,
            model.name,
            ", ".join(f"{k}={v}" for k, v in args.items()),
        )
        labels = {LABEL: "true", "servebench.server": manifest.name, "servebench.model": model.name}
        _build(client, ctx, tag, args, {**labels, "servebench.model_key": model.key}, f"server {manifest.name}")
    _remove_older(client, tag, labels)
    return tag


def ensure_balancer(client: Any) -> str:
    """The tag of the load balancer's image (docker/balancer.Dockerfile), building it when the engine lacks it."""
    import docker.errors

    with tempfile.TemporaryDirectory(prefix="servebench-image-balancer-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(DOCKERFILES / "balancer.Dockerfile", ctx / "Dockerfile")
        text = (ctx / "Dockerfile").read_text()
        declared = set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.M))
        args = {name: value for name in declared if (value := os.environ.get(BUILD_ARG_PREFIX + name, ""))}
        tag = f"servebench-balancer:{_context_digest(ctx, args)}"
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        log.info("load balancer: building image %s (%s)", tag, ", ".join(f"{k}={v}" for k, v in args.items()))
        _build(client, ctx, tag, args, {LABEL: "true", "servebench.server": "balancer"}, "load balancer")
    return tag


def _build(client: Any, ctx: Path, tag: str, args: dict[str, str], labels: dict[str, str], what: str) -> None:
    """Build `ctx` as `tag` on the engine, logging its steps; ImageError with the build's tail on failure."""
    import docker.errors

    output: list[str] = []
    for chunk in client.api.build(
        path=str(ctx), tag=tag, buildargs=args, labels=labels, rm=True, forcerm=True, decode=True
    ):
        if "error" in chunk:
            tail = "\n".join(output[-30:])
            raise ImageError(f"{what}: building image {tag} failed: {chunk['error'].strip()}\n{tail}")
        for line in str(chunk.get("stream", "")).splitlines():
            if line.strip():
                output.append(line)
                if re.search(r"\bSTEP \d+/\d+|^Step \d+/\d+", line):  # Podman's and Docker's progress
                    log.info("%s: %s", what, line.strip()[:160])
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise ImageError(f"{what}: the build of {tag} ended without an image:\n" + "\n".join(output[-30:])) from None


def _remove_older(client: Any, tag: str, labels: dict[str, str]) -> None:
    """Older images of the same server and model (any export of it) are superseded; one still used by a
    container stays."""
    import docker.errors

    selector = [f"{k}={v}" for k, v in labels.items()]
    for image in client.images.list(filters={"label": selector}):
        if tag in image.tags or any(t.endswith("/" + tag) for t in image.tags):
            continue
        try:
            client.images.remove(image.id)
            log.info("removed superseded image %s", ", ".join(image.tags) or image.short_id)
        except docker.errors.APIError as exc:
            log.debug("kept image %s: %s", image.short_id, exc)
