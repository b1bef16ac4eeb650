"""servebench: benchmark the ways of serving a model, every night and on demand.

The stages, each a sub-package that imports only those before it: base, models, servers, config, results,
measure, report. On top, the front doors: pipeline (the stages as plain functions), cli, airflow_tasks and
local_airflow. README.md ("Architecture") follows one trial through them.
"""

__version__ = "0.1.0"
