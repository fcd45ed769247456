"""Gradient memory that the binding allocates itself and takes back when the caller drops it.

A fresh NumPy array of a large gradient costs more than computing it: the C library writes every
page of it for the first time, and each first touch is a page fault (323 ms on 4096 x 32000
float32 against 46 ms for the same call in place, issue 14). A training loop that calls
`loss, grad = ctx.softmax_xent(z, y)` every step pays that every step, because NumPy hands the
memory back to the system when the previous gradient is dropped and maps it anew for the next.

So gradients of at least `min_bytes` live in blocks that this module maps itself (anonymous
private mmap, advised for transparent huge pages where the system offers them). The array handed
out has as its base a small `_Lease` object, the block's only user-visible owner; NumPy's views
of that array reference the array or the lease, never the block's memory without it, so the lease
dies only when the last array that can reach the memory dies. Its finalizer then hands the block
back, and the next call of the same size reuses pages that are already faulted in. A block is
never handed out while a lease on it is alive, so a later call never overwrites a gradient the
caller still holds.

The pool keeps at most `max_blocks` released blocks and `max_bytes` of them (least recently
released dropped first); blocks in use are the caller's and are not counted.
"""
import collections
import ctypes
import mmap
import os
import sys
import threading
import weakref
from collections import namedtuple

import numpy as np

_HUGE = 2 << 20  # transparent huge page size on x86-64 and most arm64 kernels
_PAGE = mmap.PAGESIZE
_MAP_PRIVATE = getattr(mmap, "MAP_PRIVATE", None)  # absent on Windows: no pool there
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
# MADV_POPULATE_WRITE (Linux 5.14) is 23 on every Linux architecture; Python names it from 3.13 on
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform.startswith("linux") else None)

PoolInfo = namedtuple("PoolInfo", ["max_blocks", "max_bytes", "min_bytes", "free_blocks", "free_bytes", "hits",
                                   "misses"])
PoolInfo.__doc__ = """The gradient pool's limits and state: at most max_blocks released blocks of
max_bytes in all are kept for reuse; gradients below min_bytes are plain NumPy arrays; free_blocks
and free_bytes are held now; hits and misses count the pooled gradients that reused a block or
mapped a new one."""


def _physical_bytes():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


_POOLS = weakref.WeakSet()  # every pool, for the fork handler (a pool itself may be dropped)


def _after_fork_in_child():
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Block:
    """One anonymous private mapping; addr is where the arrays start (2 MiB aligned for large
    blocks, so that huge pages can back all of it), size how many bytes from there are usable."""
    __slots__ = ("map", "addr", "size")

    def __init__(self, nbytes, huge):
        if huge:
            size = -(-nbytes // _HUGE) * _HUGE
            span = size + _HUGE  # room to start at the next 2 MiB boundary
        else:
            size = span = -(-nbytes // _PAGE) * _PAGE
        self.map = mmap.mmap(-1, span, flags=_MAP_PRIVATE)  # fd -1 adds MAP_ANONYMOUS
        view = ctypes.c_char.from_buffer(self.map)
        start = ctypes.addressof(view)
        del view  # no export may outlive this: close() needs none
        self.addr = -(-start // _HUGE) * _HUGE if huge else start
        self.size = size
        if huge and _MADV_HUGEPAGE is not None:
            try:
                self.map.madvise(_MADV_HUGEPAGE, self.addr - start, size)
            except OSError:  # a kernel without transparent huge pages: plain pages then
                pass
        if _MADV_POPULATE_WRITE is not None:
            try:  # fault it all in now, in one call, rather than page by page in the kernels' threads
                self.map.madvise(_MADV_POPULATE_WRITE, self.addr - start, size)
            except OSError:  # before Linux 5.14: the first call pays the faults
                pass

    def close(self):
        self.map.close()


class _Lease:
    """The base object of one array handed out over a block: alive while any array that reaches
    the block's memory is; its finalizer gives the block back to the pool."""
    __slots__ = ("__array_interface__", "_block", "_pool")

    def __init__(self, pool, block, shape, typestr):
        self._block = block
        self._pool = pool
        self.__array_interface__ = {"shape": shape, "typestr": typestr, "data": (block.addr, False), "version": 3}

    def __del__(self):
        try:
            self._pool._give(self._block)
        except Exception:  # interpreter shutdown: the pool's module may be torn down already
            pass


class GradientPool:
    """Blocks of gradient memory kept for reuse (see the module's docstring). Thread-safe: a lease
    may die on any thread, also inside this pool's own methods (a garbage collection run), so the
    finalizer never waits for the lock: it queues the block and settles the queue when the lock
    is free, else the holder of the lock settles it before leaving."""

    def __init__(self, max_blocks=4, max_bytes=None, min_bytes=1 << 20, huge_min=4 << 20):
        self.max_blocks = max_blocks
        self.max_bytes = max(_physical_bytes() // 8, 1 << 30) if max_bytes is None else max_bytes
        self.min_bytes = min_bytes
        self.huge_min = huge_min  # blocks this large are advised for huge pages
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._free = []  # released blocks, least recently released first
        self._free_bytes = 0
        self._returned = collections.deque()  # blocks given back, not yet in _free
        _POOLS.add(self)

    def _after_fork(self):
        self._lock = threading.Lock()  # a thread of the parent may have held it

    def empty(self, shape, dtype, nbytes):
        """An uninitialised array of shape and dtype (nbytes in all), pooled when large enough."""
        if nbytes < self.min_bytes or _MAP_PRIVATE is None or self.max_blocks <= 0:
            return np.empty(shape, dtype)
        block = self._take(nbytes)
        if block is None:
            try:
                block = _Block(nbytes, nbytes >= self.huge_min)
            except OSError:  # no room for a mapping: give back the blocks kept, then NumPy's way
                self.configure(clear=True)
                return np.empty(shape, dtype)
        return np.asarray(_Lease(self, block, shape, dtype.str))

    def _take(self, nbytes):
        """The smallest released block that holds nbytes without wasting more than an eighth."""
        with self._lock:
            self._drain()
            best = None
            limit = nbytes + nbytes // 8 + _HUGE
            for i, block in enumerate(self._free):
                if nbytes <= block.size <= limit and (best is None or block.size < self._free[best].size):
                    best = i
            if best is None:
                self.misses += 1
                block = None
            else:
                block = self._free.pop(best)
                self._free_bytes -= block.size
                self.hits += 1
        if self._returned:
            self._settle()
        return block

    def _give(self, block):
        self._returned.append(block)  # atomic: safe without the lock
        self._settle()

    def _settle(self):
        if self._lock.acquire(blocking=False):
            try:
                self._drain()
                self._trim()
            finally:
                self._lock.release()
            if self._returned:  # given back while this thread held the lock
                self._settle()

    def _drain(self):
        """With the lock held: the blocks given back go to the free list."""
        returned = self._returned
        while returned:
            block = returned.popleft()
            self._free.append(block)
            self._free_bytes += block.size

    def _trim(self):
        """With the lock held: drop the least recently released blocks beyond the limits."""
        while self._free and (len(self._free) > self.max_blocks or self._free_bytes > self.max_bytes):
            block = self._free.pop(0)
            self._free_bytes -= block.size
            block.close()

    def configure(self, max_blocks=None, max_bytes=None, min_bytes=None, clear=False):
        with self._lock:
            if max_blocks is not None:
                self.max_blocks = max_blocks
            if max_bytes is not None:
                self.max_bytes = max_bytes
            if min_bytes is not None:
                self.min_bytes = min_bytes
            self._drain()
            if clear:
                while self._free:
                    self._free.pop().close()
                self._free_bytes = 0
            self._trim()
            info = PoolInfo(self.max_blocks, self.max_bytes, self.min_bytes, len(self._free), self._free_bytes,
                            self.hits, self.misses)
        if self._returned:  # given back while this thread held the lock
            self._settle()
        return info
