"""`bentoml serve ARGS...`, with the worker processes kept in the server's process group.

BentoML's supervisor (circus) puts every worker in a session of its own (`os.setsid()` between fork and
exec). The arbiter then stops them when it gets SIGTERM, but whoever manages the server by its process
group (the servebench runner, a shell's job control) no longer sees the workers: it cannot count them,
and if it must SIGKILL the group, the workers survive the arbiter, still holding the port. Without that
call the workers stay in the group: SIGTERM reaches them and the arbiter alike, as with gunicorn or
uvicorn workers, and SIGKILL leaves nothing behind. Nothing else in the arbiter process calls setsid.
"""

import os
import sys

os.setsid = lambda: None  # type: ignore[assignment]  # only circus's pre-exec hook calls it here

from bentoml_cli.cli import cli  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "bentoml"
    cli(["serve", *sys.argv[1:]])
