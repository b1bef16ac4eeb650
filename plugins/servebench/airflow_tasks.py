"""`stopping_task`: Airflow's @task whose `on_kill` kills what the task started (servers, Locust).

Airflow calls `on_kill` when a task hits its execution time-out and, through its SIGTERM handler, when
the task is marked failed or its worker shuts down. The task's own signal handlers (teardown.py) do the
same on SIGTERM/SIGINT; `on_kill` covers the time-out, which raises no signal. Imported by DAG files only.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import task_decorator_factory
from airflow.providers.standard.decorators.python import _PythonDecoratedOperator

from servebench.base import teardown


class StoppingPythonOperator(_PythonDecoratedOperator):
    custom_operator_name = "@task"

    def on_kill(self) -> None:
        teardown.kill_all(f"Airflow stopped task {self.task_id}")


def stopping_task(python_callable: Any = None, **kwargs: Any) -> Any:
    """Use as `@stopping_task(...)` where `@task(...)` would be."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=StoppingPythonOperator, **kwargs
    )
