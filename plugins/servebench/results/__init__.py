"""What a run leaves: the vocabulary of results (metric and tag names, TrialResult, TrialRecord), the spool that
keeps results on disk first, the MLflow tracker (the only module that talks to MLflow), regression verdicts
and the host facts recorded with a run. May import: base, models, servers, config."""
