"""Runner backends: where a server runs (a local process group today; containers behind the same seam)."""
