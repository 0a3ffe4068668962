"""Where runs execute: in this process, in a local process pool, or on a Ray cluster.

Every executor takes the pending jobs, calls `on_start(job)` just before a job is handed out,
and yields `(job, outcome or failure)` as jobs end; only the driving process writes to the store.
A job is opaque here: it is pickled to the worker, given to `run_job(job, shared)`, and known by
its `.run_id`. The executor is not part of a run's identity: the same study gives the same run
ids, and the same numbers, whichever executes it.

Executors are registered by name through the `register_executors` hook (`ExecutorSpec`); the
built-in ones below are registered by the default plugin `xmodal.default_executors`, and every
name xmodal accepts (`--executor`, `[execution] executor`) comes from the registry.

The process pool cleans up after itself on every way a study can end. Its exported data lives
in `$TMPDIR/xmodal-<driver pid>-*`: removed by `close()` (normal end, error, Ctrl-C, SIGTERM
through `xmodal.signals`), at interpreter exit, by the workers when they notice that the driver
is gone, and, failing all of these, by the next pool that finds its owner dead. Workers ignore
Ctrl-C (the driver handles it) and exit on their own within a second of the driver's death.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from xmodal.components import ExecutorOptions, ExecutorSpec
from xmodal.errors import XmodalError, did_you_mean
from xmodal.execute import Outcome, execute
from xmodal.plugins import Registry, get_registry
from xmodal.studydata import StudyData

if TYPE_CHECKING:
    from xmodal.studydata import DataHandle

RAY_INSTALL = "pip install -c constraints.txt 'xmodal[ray]'"

Job = Any  # what the runner hands out: picklable, passed to `execute`, known by `.run_id`
OnStart = Callable[[Job], None]
Results = Iterator[tuple[Job, "Outcome | Failure"]]


@attrs.frozen
class Failure:
    """A run that raised: its error line and a short traceback."""

    error: str
    traceback: str


def run_job(job: Job, shared: StudyData) -> Outcome | Failure:
    """Execute one job: its `Outcome`, or a `Failure` with the error when the run raised (never
    an exception for a failing run). What every executor computes for each job, wherever it
    runs; `shared` is the study's data as loaded, exported and attached there."""
    try:
        return execute(job, shared)
    except Exception as exc:
        return Failure(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6))


def threads_per_run(workers: int, threads: int = 0) -> int:
    """Torch threads for each run: `threads`, or with 0 as many as fit the cores among workers."""
    if threads > 0:
        return threads
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class LocalExecutor:
    """Runs jobs one after another in this process (the default)."""

    workers = 1

    def __init__(self, shared: StudyData, threads: int) -> None:
        self.shared = shared
        self.threads = threads

    def run(self, jobs: list[Job], on_start: OnStart) -> Results:
        import torch  # here, not at the top: checking an executor must not wait for torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for job in jobs:
                on_start(job)
                yield job, run_job(job, self.shared)
        finally:
            torch.set_num_threads(previous)

    def close(self) -> None:
        pass


# -- temporary data of process pools -------------------------------------------------------------

_TEMP_DIR = re.compile(r"^xmodal-(\d+)-")
_OWNER_FILE = "owner.json"


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of process `pid` (Linux), to tell a reused pid from its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5), counted from 3


def _owner_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    current = _process_start_time(pid)
    return start is None or current is None or current == start


def make_temp_dir(base: str | Path | None = None) -> Path:
    """A fresh `xmodal-<pid>-*` directory for a pool's exported data, labelled with its owner."""
    path = Path(tempfile.mkdtemp(prefix=f"xmodal-{os.getpid()}-", dir=base))
    owner = {
        "pid": os.getpid(),
        "start": _process_start_time(os.getpid()),
        "host": socket.gethostname(),
    }
    (path / _OWNER_FILE).write_text(json.dumps(owner))
    return path


def remove_stale_temp_dirs(base: str | Path | None = None) -> list[Path]:
    """Remove the `xmodal-<pid>-*` directories in `base` (default: the temp directory) whose
    owning process is dead, e.g. a driver killed with `kill -9`. Only this user's directories
    made on this host are considered; a live owner's directory is never touched."""
    base = Path(base if base is not None else tempfile.gettempdir())
    try:
        entries = list(os.scandir(base))
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMP_DIR.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = int(match.group(1))
        try:
            owner = json.loads((Path(entry.path) / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = {}
        if not isinstance(owner, dict):
            owner = {}
        if owner.get("host", socket.gethostname()) != socket.gethostname():
            continue  # a temp directory shared between machines: not ours to judge
        if pid == os.getpid() or _owner_alive(pid, owner.get("start")):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


# -- process pool --------------------------------------------------------------------------------

WATCHDOG_POLL = 0.5  # seconds between a worker's checks that its driver is still alive


def _watch_driver(driver_pid: int, temp_dir: str | None, poll: float = WATCHDOG_POLL) -> None:
    """In a worker: exit (removing the pool's temp data) as soon as the driver has died.

    An orphan is re-parented, so its parent pid changes; this thread notices within `poll` s
    even while the main thread is busy in a long run.
    """

    def watch() -> None:
        while True:
            if os.getppid() != driver_pid:
                if temp_dir:
                    shutil.rmtree(temp_dir, ignore_errors=True)
                os._exit(70)
            time.sleep(poll)

    threading.Thread(target=watch, name="xmodal-driver-watchdog", daemon=True).start()


def _driver_gone(temp_dir: str | None) -> None:
    """The pipe to the driver broke: the driver died (its close() will not run) or is done with
    the pool. Remove the pool's data now; the watchdog would be too late, this process is about
    to exit. (Not decided by `getppid()`: the kernel closes a dying driver's pipes before it
    re-parents its children.)"""
    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _worker_main(
    conn: multiprocessing.connection.Connection,
    handle: DataHandle,
    threads: int,
    driver_pid: int,
    temp_dir: str | None,
) -> None:
    """A pool worker: receive jobs until told to stop (None) or the driver disappears."""
    # Ctrl-C reaches the whole process group; the driver handles it and then stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_driver(driver_pid, temp_dir)
    import torch

    torch.set_num_threads(threads)
    try:
        data: StudyData | None = StudyData.attach(handle, get_registry())
        broken = ""
    except Exception as exc:
        data, broken = None, f"{type(exc).__name__}: {exc}"
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            _driver_gone(temp_dir)
            return
        if job is None:
            return
        if data is None:
            try:
                conn.send(("broken", broken))
            except (EOFError, OSError):  # the driver died while this worker attached its data
                _driver_gone(temp_dir)
                return
            continue
        result = run_job(job, data)
        try:
            conn.send(("done", result))
        except (EOFError, OSError):
            _driver_gone(temp_dir)
            return
        except Exception as exc:  # an outcome that cannot be pickled
            conn.send(("done", Failure(f"cannot return the run's outcome: {exc}", "")))


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started in this block ignore SIGINT from their first instruction on (an ignored
    signal stays ignored across exec, and Python keeps it so): a Ctrl-C while a worker starts
    (importing torch takes seconds) prints nothing there. The block lasts the few milliseconds
    of a fork and exec; SIGINT is blocked in this thread meanwhile, so a Ctrl-C then is
    delivered once the handler is back, unless another thread of the process took it (then that
    one press is lost)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the worker then ignores it a bit later
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM for the duration of the block; the yielded list says which came.

    Signal handlers set before the block are restored after it (also the SIGTERM handler that
    `ray.init` replaces with its own). Outside the main thread this holds nothing.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: Any) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@attrs.define
class _Worker:
    process: Any  # multiprocessing.context.SpawnProcess
    conn: multiprocessing.connection.Connection
    job: Job = None  # the job it is running, if any


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", out of memory?" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


class ProcessExecutor:
    """A pool of worker processes on this machine; the study's data is memory-mapped by all."""

    def __init__(self, shared: StudyData, workers: int, threads: int) -> None:
        self.workers = workers
        self._workers: list[_Worker] = []
        remove_stale_temp_dirs()
        try:
            self._dir = make_temp_dir()
        except OSError as exc:
            raise XmodalError(
                f"cannot create a directory for the worker processes' data in "
                f"{tempfile.gettempdir()}: {exc.strerror or exc}; set TMPDIR to a writable directory"
            ) from None
        # Also removed at interpreter exit if close() is never reached.
        self._remove_dir = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        try:
            handle = shared.export(self._dir)
        except OSError as exc:
            self.close()
            raise XmodalError(
                f"cannot write the study's data for the worker processes to {self._dir}: "
                f"{exc.strerror or exc}; free space there or set TMPDIR to a larger disk"
            ) from None
        except BaseException:
            self.close()
            raise
        # spawn, not fork: forking a process whose torch/OpenMP threads have run can deadlock.
        context = multiprocessing.get_context("spawn")
        try:
            for i in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_worker_main,
                    args=(theirs, handle, threads, os.getpid(), str(self._dir)),
                    name=f"xmodal-worker-{i}",
                    daemon=True,  # terminated at interpreter exit, whatever happens
                )
                with _children_ignore_sigint():
                    process.start()
                theirs.close()  # so that the worker's death reads as EOF here
                self._workers.append(_Worker(process, ours))
        except BaseException:
            self.close()
            raise

    def run(self, jobs: list[Job], on_start: OnStart) -> Results:
        pending = iter(jobs)
        idle = list(reversed(self._workers))
        busy: dict[Any, _Worker] = {}

        def hand_out() -> None:
            while idle:
                try:
                    job = next(pending)
                except StopIteration:
                    return
                worker = idle.pop()
                on_start(job)
                worker.job = job
                busy[worker.conn] = worker
                try:
                    worker.conn.send(job)
                except (BrokenPipeError, ConnectionResetError, EOFError):
                    raise self._died(worker) from None

        hand_out()
        while busy:
            for conn in multiprocessing.connection.wait(list(busy)):
                worker = busy.pop(conn)
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    raise self._died(worker) from None
                if kind == "broken":
                    raise XmodalError(
                        f"the worker processes could not load the study's data: {payload}"
                    )
                job, worker.job = worker.job, None
                idle.append(worker)
                hand_out()
                yield job, payload

    def _died(self, worker: _Worker) -> XmodalError:
        worker.process.join(1.0)
        running = f" while running {worker.job.run_id}" if worker.job is not None else ""
        return XmodalError(
            f"worker process {worker.process.pid} died ({_describe_exit(worker.process.exitcode)})"
            f"{running}; the runs finished so far are saved: run the same command again to resume"
        )

    def close(self) -> None:
        """Stop the workers (at once if they are busy: their runs would be thrown away) and
        remove the exported data. Safe to call more than once."""
        workers, self._workers = self._workers, []
        # Removed first: once the workers are stopped nobody else would remove it after a
        # kill -9 of this process (their memory maps of the unlinked files stay valid).
        self._remove_dir()
        for worker in workers:
            stopped = False
            if worker.job is None and worker.process.is_alive():
                try:
                    worker.conn.send(None)
                    stopped = True
                except (OSError, EOFError):
                    pass
            if not stopped:
                worker.process.terminate()
        deadline = time.monotonic() + 5.0
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.conn.close()
        self._remove_dir()


# -- Ray -----------------------------------------------------------------------------------------

RAY_CONNECT_TIMEOUT = 3.0  # seconds to wait for a Ray cluster's address to answer
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _import_ray() -> Any:
    try:
        import ray
    except Exception as exc:
        detail = "not installed" if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise XmodalError(
            f"--executor ray needs Ray ({detail}).\n"
            f"  install it from the xmodal checkout (constraints.txt keeps torch at its pinned "
            f"version):\n    {RAY_INSTALL}\n"
            f"  or run without Ray: --executor process (or -j N)"
        ) from None
    return ray


def parse_ray_address(address: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a Ray cluster address; None for "auto" and "local", which Ray
    resolves itself. `host:port` is a cluster's GCS (default port 6379); `ray://host:port` is a
    Ray Client server (default port 10001)."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    scheme = ""
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme != "ray":
            raise XmodalError(
                f"Ray address {address!r}: unsupported scheme {scheme + '://'!r}; use host:port "
                "(a cluster's GCS, e.g. head:6379), ray://host:port (Ray Client) or auto"
            )
    try:
        parts = urlsplit(text if scheme else f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise XmodalError(f"Ray address {address!r} is not host:port ({exc})") from None
    if not host:
        raise XmodalError(f"Ray address {address!r} names no host; use host:port, e.g. head:6379")
    return scheme, host, port or (10001 if scheme == "ray" else 6379)


def _probe_ray_address(address: str, host: str, port: int, timeout: float) -> None:
    """Fail fast, naming the address, unless `host:port` accepts a connection and speaks gRPC
    (HTTP/2), as a Ray GCS or Ray Client server does. Ray itself waits minutes."""
    fix = "start the cluster (`ray start --head`) or fix --address / XMODAL_RAY_ADDRESS"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS handshake comes first: the plain HTTP/2 probe does not apply
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE)
            frame = sock.recv(9)
    except socket.gaierror as exc:
        raise XmodalError(
            f"cannot reach the Ray cluster at {address}: unknown host {host!r} ({exc.strerror}); "
            f"{fix}"
        ) from None
    except TimeoutError:
        raise XmodalError(
            f"cannot reach the Ray cluster at {address}: {host}:{port} did not answer within "
            f"{timeout:g} s; {fix}"
        ) from None
    except OSError as exc:
        raise XmodalError(
            f"cannot reach the Ray cluster at {address}: {host}:{port}: "
            f"{exc.strerror or type(exc).__name__}; {fix}"
        ) from None
    if len(frame) < 9 or frame[3] != 0x04:  # a server's first HTTP/2 frame is SETTINGS
        raise XmodalError(
            f"{address} is not a Ray cluster: {host}:{port} accepts connections but does not "
            f"speak gRPC (a Ray GCS port, 6379 by default, or a Ray Client port with ray://); "
            f"{fix}"
        )


def executor_names(registry: Registry) -> list[str]:
    """The registered executors' names, in registration order (built-in ones first)."""
    return list(registry.executors)


def default_executor(registry: Registry) -> str:
    """The name of the executor a study runs on when none is named (the spec with `default`)."""
    defaults = [name for name, spec in registry.executors.items() if spec.default]
    if len(defaults) != 1:
        claim = ", ".join(defaults) if defaults else "none"
        raise XmodalError(
            f"exactly one executor must be the default, and {claim} claim it; name one with "
            f"--executor (registered: {', '.join(registry.executors) or 'none'})"
        )
    return defaults[0]


def executor_spec(registry: Registry, name: str | None) -> ExecutorSpec:
    """The executor called `name` (None: the default), or an error listing the registered ones."""
    name = default_executor(registry) if name is None else name
    spec = registry.executors.get(name)
    if spec is None:
        guess = did_you_mean(name, registry.executors)
        hint = f"; did you mean {guess!r}?" if guess else ""
        notes = "".join(f"\n  {note}" for note in registry.filter_notes("executors"))
        raise XmodalError(
            f"executor {name!r} is not one of {', '.join(registry.executors)}{hint}{notes}"
        )
    return spec


def require_executor(
    name: str | None,
    address: str | None = None,
    *,
    workers: int = 1,
    threads: int = 1,
    registry: Registry | None = None,
) -> ExecutorSpec:
    """Fail now, with a message saying what to do, if executor `name` (None: the default)
    cannot run here: an unknown name (with "did you mean"), or what its `available` reports (for
    Ray: not installed, a `ray://` address without Ray Client, or a cluster address that does
    not answer). Call it before the results database is touched. Returns the executor's spec."""
    spec = executor_spec(registry if registry is not None else get_registry(), name)
    if spec.available is not None:
        options = ExecutorOptions(workers=max(1, workers), threads=max(1, threads), address=address)
        try:
            problem = spec.available(options)
        except XmodalError as exc:
            problem = str(exc)
        except Exception as exc:  # a bug in the plugin: named, not a traceback
            problem = (
                f"the availability test of executor {spec.name!r} raised "
                f"{type(exc).__name__}: {exc}"
            )
        if problem:
            raise XmodalError(problem)
    return spec


def ray_problem(address: str | None, *, timeout: float = RAY_CONNECT_TIMEOUT) -> str | None:
    """Why the Ray executor cannot run with `address` (None: a local Ray instance), or None."""
    try:
        _check_ray(address, timeout)
    except XmodalError as exc:
        return str(exc)
    return None


def _check_ray(address: str | None, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    ray = _import_ray()
    if not address:
        return
    parsed = parse_ray_address(address)
    if parsed is None:
        return
    scheme, host, port = parsed
    if scheme == "ray" and importlib.util.find_spec("grpc") is None:
        version = getattr(ray, "__version__", "")
        pin = f"=={version}" if version else ""
        raise XmodalError(
            f"--address {address} uses Ray Client (ray://), which needs Ray's client extra:\n"
            f"    pip install -c constraints.txt 'ray[client]{pin}'\n"
            f"  or, on a node of the cluster, pass its GCS address (head:6379) or 'auto'"
        )
    _probe_ray_address(address, host, port, timeout)


_ray_data: dict[str, StudyData] = {}


def _run_on_ray(handle_id: str, handle: DataHandle, job: Job, threads: int) -> Outcome | Failure:
    # Ray reuses worker processes: attach the study's data once per process, not once per run.
    if handle_id not in _ray_data:
        _ray_data.clear()  # a long-lived cluster worker keeps only the current study's data
        import torch

        torch.set_num_threads(threads)
        _ray_data[handle_id] = StudyData.attach(handle, get_registry())
    return run_job(job, _ray_data[handle_id])


class RayExecutor:
    """Runs jobs as Ray tasks; the study's data goes to Ray's object store once."""

    def __init__(self, shared: StudyData, workers: int, threads: int, address: str | None) -> None:
        _check_ray(address)
        ray = _import_ray()
        self._ray = ray
        self._started = not ray.is_initialized()
        # A KeyboardInterrupt inside ray.init or the first ray.put left Ray half set up, and
        # shutting it down then crashed the driver (SIGSEGV): Ctrl-C and SIGTERM wait until
        # Ray is up, then stop the study the usual way.
        with _interrupts_deferred() as held:
            if self._started:
                options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                try:
                    if address:
                        ray.init(address=address, **options)
                    else:  # "local": a new instance, never a cluster that happens to run here
                        ray.init(address="local", num_cpus=workers, **options)
                except (Exception, SystemExit) as exc:  # Ray exits the process on some failures
                    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                    raise XmodalError(
                        f"cannot start or connect to {where}: {type(exc).__name__}: {exc}"
                    ) from None
            try:
                cpus = ray.cluster_resources().get("CPU", workers)
                self.workers = workers if not address else int(cpus)
                self.threads = threads
                self._handle = ray.put(shared.export(None))
                self._handle_id = os.urandom(8).hex()
                self._task = ray.remote(num_cpus=1)(_run_on_ray)
            except BaseException:
                self.close()
                raise
        if held:
            self.close()
            raise KeyboardInterrupt

    def run(self, jobs: list[Job], on_start: OnStart) -> Results:
        ray = self._ray
        pending = iter(jobs)
        running: dict[Any, Job] = {}
        threads = self.threads

        def submit_next() -> None:
            try:
                job = next(pending)
            except StopIteration:
                return
            on_start(job)
            running[self._task.remote(self._handle_id, self._handle, job, threads)] = job

        for _ in range(self.workers + 1):
            submit_next()
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            job = running.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                result = Failure(f"ray: {type(exc).__name__}: {exc}", "")
            submit_next()
            yield job, result

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_executor(
    name: str | None,
    shared: StudyData,
    workers: int,
    threads: int = 1,
    address: str | None = None,
    registry: Registry | None = None,
) -> Any:
    """The executor called `name` (None: the default) as its `ExecutorSpec.make` builds it, with
    `threads` torch threads per run (0: cores / workers)."""
    spec = executor_spec(registry if registry is not None else shared.registry, name)
    options = ExecutorOptions(
        workers=max(1, workers), threads=threads_per_run(workers, threads), address=address
    )
    return spec.make(shared, options)
