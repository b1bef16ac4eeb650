"""The morning-after view, read from trial records (never re-measured): the comparison rows, the HTML page with
its plots, Markdown and CSV, and `compare`. May import: base, config, results (MLflow through the tracker)."""
