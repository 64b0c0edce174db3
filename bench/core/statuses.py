"""How a cell can end: the values of the ``status`` column.

Stdlib only, apart from the pandas-backed schema: a worker process checks the
status of the row it reports without importing pandas (and the threads pyarrow's
allocator starts).
"""

#: ok: measured; skipped: does not apply here (the reason says why); error: an exception, one line;
#: oom: out of device or host memory; crashed: the worker process died by a signal;
#: timeout: it ran past --cell-timeout and was killed
STATUSES: tuple[str, ...] = ("ok", "skipped", "error", "oom", "crashed", "timeout")
