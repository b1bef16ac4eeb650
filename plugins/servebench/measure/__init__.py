"""One trial, measured: the load generator (Locust in child processes, HDR histograms), the resource sampler,
the figures and flags, repeats and capacity search, and `trial.run_trial`, which ties them to a server.
May import: base, models, servers, config, results."""
