"""Which models and batch sizes a server can serve, from its manifest (`model_format`, `[serves]`) and the
model's export (its formats, task and input schema). The planner skips what does not fit, with the reason;
a combination that fits and then answers wrongly fails parity, as any other."""

from __future__ import annotations

from typing import Any

from servebench.servers.manifest import Manifest


def unsupported(server: Manifest, meta: dict[str, Any], batch: int = 1) -> str | None:
    """Why `server` cannot serve this model at this batch size, or None."""
    serves = server.serves
    fmt = server.model_format
    if fmt not in meta["files"]:
        why = meta.get("unavailable", {}).get(fmt, "not exported")
        return f"{server.name} serves the {fmt} format, which model {meta['name']} has not: {why}"
    if meta["task"] not in serves.tasks:
        return f"{server.name} serves {'/'.join(serves.tasks)} models; {meta['name']} is a {meta['task']}"
    types = sorted(types_of(meta) - set(serves.column_types))
    if types:
        return f"{server.name} parses {'/'.join(serves.column_types)} columns; {meta['name']} has {'/'.join(types)} columns"
    if meta["inputs"]["named"] and not serves.named_columns:
        return f"{server.name} takes rows as lists; {meta['name']} takes named columns"
    if server.protocol == "open-inference-v2" and not meta["inputs"]["named"] and "string" in types_of(meta):
        return f"{server.name} takes positional rows as one FP32 tensor; {meta['name']} has unnamed string columns"
    if batch > serves.max_batch_rows:
        return f"{server.name} takes at most {serves.max_batch_rows} rows per request, not {batch}"
    return None


def types_of(meta: dict[str, Any]) -> set[str]:
    return {c["type"] for c in meta["inputs"]["columns"]}


def matrix(servers: list[Manifest]) -> list[dict[str, str]]:
    """One row per server: what it serves, as the README's capability table shows it."""
    return [
        {
            "server": s.name,
            "format": s.model_format,
            "tasks": ", ".join(s.serves.tasks),
            "columns": ", ".join(s.serves.column_types) + (" (named)" if s.serves.named_columns else " (positional)"),
            "batch rows": str(s.serves.max_batch_rows),
            "backends": ", ".join(s.backends),
        }
        for s in servers
    ]
