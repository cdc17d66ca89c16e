"""Compiled (numba) kernels for the hottest steps of a round, with torch as the reference.

* :mod:`~p2probust.jit.rank_mean` — aggregate-and-mix with a coordinate-wise median or trimmed
  mean, the inbox gather fused into a register-resident sorting network (same bits as torch).
* :mod:`~p2probust.jit.logreg` — the softmax-regression gradient of the local step, batch gather,
  both matrix products (MKL's fused multiply-add chains), softmax and bias sum in one pass (same
  bits; each shape is checked against torch at its first call).
* :mod:`~p2probust.jit.softmax` — the softmax-regression residual (the torch path of the gradient,
  and the DP per-example gradients), ATen's softmax arithmetic (SLEEF's ``expf``, its summation
  order) repeated exactly (same bits).
* :mod:`~p2probust.jit.sgd` — the end of the local step (weight decay, momentum, the step) in one
  pass over the acting rows, ATen's fused multiply-adds (same bits).
* :mod:`~p2probust.jit.row_means` — the recipients' honest means an omniscient attack crafts
  from, summed in the order of torch's sparse product (same bits).
* :mod:`~p2probust.jit.moments` — the consensus distance in one pass (equal to float64 rounding).
* :mod:`~p2probust.jit.inbox` and :mod:`~p2probust.jit.engine` — the asynchronous inbox buffer's
  deliveries and snapshot copies, and the engine's snapshot reference counts, each in one pass
  (integers and copies: nothing to round).

The torch paths remain the reference and serve everything else (``vmap``, other rules, small
calls, and every run whose tensors are not on the CPU: ``RunConfig.device``). ``RunConfig.jit``
(``--jit``) chooses for the rank-mean kernel: ``auto`` uses it when the call is large enough to
repay its one-off compilation or the kernel is compiled already, ``on`` always, ``off`` never. The
others are used on the CPU whenever numba imports and the call is large enough, or (gradient,
softmax, update) the kernel is loaded in the process; the softmax and update kernels are kept only
if they match torch bit for bit on this machine (:class:`CheckedKernel`), the gradient kernel per
shape at its first call.
Compiled code is cached on disk (numba ``cache=True``), so compilation is paid once per machine.

A first compiled logistic-regression gradient (numba's vectorized loops) was no faster than
torch's batched matrix products; the one now used holds its running sums in vector registers.

Work is split over ``torch.get_num_threads()`` threads by rows (the kernels release the GIL).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable, get_args

import torch

from ..config.run import JitMode

MODES = get_args(JitMode)  # the one list: RunConfig.jit's annotation


#: source of ``fma(a, b, c)`` for numba kernels: ``a * b + c`` rounded once (``llvm.fma``, the
#: ``vfmadd`` of ATen's vectorized kernels), for float32 or float64 operands of one type
FMA_SOURCE = '''from numba import types
from numba.extending import intrinsic


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma)."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen
'''


@lru_cache(maxsize=None)
def available() -> bool:
    """True if numba can be imported (the compiled paths are then usable); asked once per process."""
    try:
        importlib.import_module("numba")
    except Exception:  # pragma: no cover - depends on the installation
        return False
    return True


def check_mode(mode: str, needed: bool, device: torch.device | str = "cpu") -> bool:
    """Whether compiled kernels may be used in ``mode`` on tensors of ``device``; ``on`` without
    numba, or with tensors off the CPU (the kernels read CPU memory), is an error when ``needed``;
    ``auto`` off the CPU is the torch path."""
    if mode not in MODES:
        raise ValueError(f"jit = {mode!r} must be one of: {', '.join(MODES)}")
    on_cpu = torch.device(device).type == "cpu"
    if mode == "on" and needed and not on_cpu:
        raise ValueError(f"jit = 'on' needs the run on the cpu, not on {str(device)!r} (the compiled kernels read "
                         "CPU memory); use jit = 'auto' or 'off'")
    if mode == "on" and needed and not available():
        raise ValueError("jit = 'on' needs numba, which cannot be imported here (pip install numba); use jit = 'auto' or 'off'")
    return mode != "off" and on_cpu and available()


def cache_dir() -> Path:
    """Folder for generated kernel sources (numba caches the compiled code beside them):
    ``$P2PROBUST_CACHE``, else ``~/.cache/p2probust``."""
    root = os.environ.get("P2PROBUST_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "p2probust"


def private_cache_dir(name: str) -> Path | None:
    """``cache_dir() / name``, created private (mode 0700), or None with one warning when it cannot
    be trusted: not owned by this user, writable by others, or not creatable.

    Code is imported from this folder (and numba's cache beside it holds pickles), so a folder that
    someone else can write to would let them run code as this user; there is no fallback to a
    shared temporary folder: callers compile in memory instead.
    """
    folder = cache_dir() / name
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
        problem = None
        if st.st_uid != os.getuid():
            problem = f"it is owned by uid {st.st_uid}, not by this user ({os.getuid()})"
        elif st.st_mode & 0o022:
            problem = f"others can write to it (mode {st.st_mode & 0o777:o})"
        elif folder.is_symlink():
            problem = "it is a symbolic link"
    except OSError as err:
        problem = f"it cannot be created ({err.strerror or err})"
    if problem is not None:
        _warn_once(f"p2probust: not using the kernel cache {folder}: {problem}; compiling in memory "
                   f"(set P2PROBUST_CACHE to a private folder to cache compiled kernels)")
        return None
    return folder


@lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def cache_path(source: str, stem: str) -> Path | None:
    """Where ``source`` is (or will be) written in the private cache folder; None without one."""
    folder = private_cache_dir("kernels")
    return None if folder is None else folder / f"{stem}_{hashlib.sha256(source.encode()).hexdigest()[:12]}.py"


def in_disk_cache(path: Path, func: str) -> bool:
    """Whether numba's disk cache holds ``func`` of the module at ``path`` (its index file)."""
    return any((path.parent / "__pycache__").glob(f"{path.stem}.{func}-*.nbi"))


def load_kernel(source: str, stem: str, func: str, announce: str):
    """Write ``source`` to the private cache folder (or compile in memory) and return ``func``."""
    path = cache_path(source, stem)
    if path is None:
        return _compile_in_memory(source, stem, func)
    folder, digest = path.parent, path.stem.rsplit("_", 1)[1]
    try:
        if not path.is_file() or path.read_bytes() != source.encode():  # never import what we did not write
            tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}"
            tmp.write_text(source)
            os.replace(tmp, path)  # atomic: concurrent processes see a whole file
    except OSError as err:
        warnings.warn(f"p2probust: cannot write the kernel cache in {folder} ({err}); compiling in memory", stacklevel=2)
        return _compile_in_memory(source, stem, func)
    if not in_disk_cache(path, func):
        print(f"p2probust: compiling {announce}; cached in {path.parent})", file=sys.stderr, flush=True)
    spec = importlib.util.spec_from_file_location(f"p2probust_{stem}_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's disk cache re-imports the module by name
    spec.loader.exec_module(module)
    return getattr(module, func)


def _compile_in_memory(source: str, stem: str, func: str):
    """The kernel compiled from the generated source without a disk cache (paid every process)."""
    namespace: dict = {}
    exec(compile(source.replace("cache=True", "cache=False"), f"<p2probust {stem}>", "exec"), namespace)
    return namespace[func]


class CheckedKernel:
    """A kernel compiled from ``source`` on first use (``func`` of it; see
    :func:`load_kernel`) and, with ``check``, kept only if ``check(kernel)`` is
    true (its bits match torch's on this machine); :meth:`get` returns it, or None after a failed
    check."""

    def __init__(self, source: str, stem: str, func: str, announce: str, check: Callable[[Callable], bool] | None = None):
        self.source, self.stem, self.func, self.announce, self.check = source, stem, func, announce, check
        self._lock = threading.Lock()
        self._kernel: list = []  # [kernel or None] once loaded and checked

    @property
    def loaded(self) -> bool:
        """Whether the kernel is compiled, checked and usable in this process (then even small calls
        may take it: its one-off cost is paid)."""
        return bool(self._kernel) and self._kernel[0] is not None

    def get(self) -> Callable | None:
        with self._lock:
            if not self._kernel:
                kernel = load_kernel(self.source, self.stem, self.func, self.announce)
                self._kernel.append(kernel if self.check is None or self.check(kernel) else None)
        return self._kernel[0]


@lru_cache(maxsize=4)
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """A pool per process: a forked child (e.g. a sweep worker) must not reuse its parent's pool,
    whose threads it does not have."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="p2probust-jit")


def same_bits(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Whether two float tensors hold the same bits (any NaN matching any NaN): how a kernel that
    repeats torch's arithmetic is checked against it."""
    ints = torch.int32 if got.element_size() == 4 else torch.int64
    return bool(((got.view(ints) == want.view(ints)) | (got.isnan() & want.isnan())).all())


def split_rows(rows: int, call: Callable[[int, int], None], *, min_rows: int = 64) -> None:
    """Run ``call(start, stop)`` over ``[0, rows)`` cut into ``torch.get_num_threads()`` contiguous
    shares (at least ``min_rows`` rows each); the last share runs on the calling thread."""
    threads = max(1, min(torch.get_num_threads(), rows // min_rows))
    if threads == 1:
        call(0, rows)
        return
    cuts = [rows * t // threads for t in range(threads + 1)]
    jobs = [_pool(threads - 1, os.getpid()).submit(call, s, e) for s, e in zip(cuts[:-2], cuts[1:-1])]
    call(cuts[-2], rows)
    for job in jobs:
        job.result()
