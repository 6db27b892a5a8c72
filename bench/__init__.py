"""`make bench`: the receiver's and processor's costs, each next to a baseline measured in the same run.

Run as `python -m bench` (`--quick` for a smoke run). Every figure is a median over repeated runs with its spread;
each benchmark lives in its own module and runs its measurements in fresh subprocesses (`bench.harness`).
"""

import infra  # noqa: F401 - importing infra puts functions/ on the import path (infra/__init__.py)
