"""Servers as data and as processes: manifests (servers/<name>/manifest.toml), their isolated builds (venvs,
images), the runner backends that start them (local process group, container) and the probes that read their
resources, the HTTP contract, readiness and the parity gate. May import: base, models."""
