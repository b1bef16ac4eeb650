"""What a run is asked to do: the benchmark parameters (one pydantic model, from which the trigger form, the CLI
and the trial runs' params are made) and the trial spec (a matrix point with those settings).
May import: base, models, servers."""
