"""xmodal's built-in executors, registered through the `register_executors` hook like any
plugin's executors (llm's default-plugins model).

This module is a default plugin: it always loads, before the entry points and whatever
`XMODAL_LOAD_PLUGINS` says, so a study always has somewhere to run. Registering is cheap: the
implementations (`xmodal.executors`, which needs torch) are imported when an executor is made or
checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xmodal.components import ExecutorOptions, ExecutorSpec
from xmodal.hookspecs import hookimpl


def _make_local(shared: Any, options: ExecutorOptions) -> Any:
    from xmodal import executors

    if options.workers <= 1:
        return executors.LocalExecutor(shared, options.threads)
    return executors.ProcessExecutor(shared, options.workers, options.threads)


def _make_process(shared: Any, options: ExecutorOptions) -> Any:
    from xmodal import executors

    return executors.ProcessExecutor(shared, max(1, options.workers), options.threads)


def _make_ray(shared: Any, options: ExecutorOptions) -> Any:
    from xmodal import executors

    return executors.RayExecutor(shared, max(1, options.workers), options.threads, options.address)


def _ray_available(options: ExecutorOptions) -> str | None:
    from xmodal import executors

    return executors.ray_problem(options.address)


@hookimpl
def register_executors(register: Callable[[Any], None]) -> None:
    register(
        ExecutorSpec(
            name="local",
            make=_make_local,
            description="runs in this process; with --workers N > 1, in a pool of N processes",
            spawns=lambda options: options.workers > 1,
            default=True,
        )
    )
    register(
        ExecutorSpec(
            name="process",
            make=_make_process,
            description="a pool of --workers processes on this machine, sharing the data by "
            "memory-mapping",
            spawns=lambda options: True,
        )
    )
    register(
        ExecutorSpec(
            name="ray",
            make=_make_ray,
            available=_ray_available,
            shares_files=False,
            description="Ray tasks: a local Ray instance, or a cluster given by --address "
            "(needs the `ray` extra)",
        )
    )
