"""metal-sim worker process: runs compiled kernels with guarded buffers (stdlib only, started by path).

Protocol on stdin/stdout: 8-byte length + pickle. A request names the runtime and kernel shared
objects, the launch (grid, threadgroup, which buffers are outputs) and its runs: each a thread
schedule (reverse) and the buffers as (name, bytes, pointer offset, itemsize, front), see
`Guarded`; the reply carries each run's outputs or the first fault report.
"""

import ctypes
import os
import pickle
import struct
import sys

PAGE = os.sysconf("SC_PAGESIZE")
UNLOADABLE = 6  # reply code: a shared object that cannot be loaded (the caller rebuilds it)
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.dlclose.argtypes = [ctypes.c_void_p]


class U3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint32), ("y", ctypes.c_uint32), ("z", ctypes.c_uint32)]


class Err(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("sig", ctypes.c_int), ("write", ctypes.c_int),
                ("tg_bytes", ctypes.c_int), ("addr", ctypes.c_uint64), ("thread", U3),
                ("group", U3), ("msg", ctypes.c_char * 1024)]


class Guarded:
    """A storage buffer between two PROT_NONE pages; the kernel gets a pointer `offset` bytes into it.

    The storage touches one guard page exactly: the trailing one (`front` false: even one element
    past its end faults) or the leading one (`front` true: even one element before its start
    faults). A page-granular guard cannot be exact at both ends, so inputs passed as strided views
    (whose negative strides read below the pointer) run once each way (see kernel.py). A storage
    against the trailing page then starts only as aligned as its size, and a pointer into a view
    is only element-aligned (kernels are compiled with -fmax-type-align=1 for that).
    """

    def __init__(self, name, data, offset=0, itemsize=1, front=False):
        n = len(data)
        self.name, self.n, self.itemsize = name, n, itemsize
        self.pages = (n + PAGE - 1) // PAGE * PAGE
        self.total = self.pages + 2 * PAGE
        base = libc.mmap(None, self.total, 3, 0x22, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise MemoryError("mmap failed")
        self.base = base
        libc.mprotect(base, PAGE, 0)
        libc.mprotect(base + PAGE + self.pages, PAGE, 0)
        self.start = base + PAGE + (0 if front else self.pages - n)
        self.ptr = self.start + offset
        ctypes.memset(base + PAGE, 0xFF, self.pages)
        ctypes.memmove(self.start, data, n)

    def read(self):
        return ctypes.string_at(self.start, self.n)

    def free(self):
        libc.munmap(self.base, self.total)


class Unloadable(Exception):
    """A shared object that dlopen rejects (empty, truncated, garbage) or that lacks our entry symbol."""

    def __init__(self, path, reason):
        super().__init__(reason)
        self.path, self.reason = path, reason


_symbols = {}


def _symbol(path, name, mode=os.RTLD_LOCAL):
    """Function `name` of the shared object at `path`, loaded and checked once per process."""
    if (path, name) not in _symbols:
        try:
            lib = ctypes.CDLL(path, mode=mode)
        except OSError as e:
            raise Unloadable(path, str(e)) from None
        try:
            _symbols[path, name] = getattr(lib, name)
        except AttributeError:
            libc.dlclose(lib._handle)  # else dlopen would hand back this object for the rebuilt file
            raise Unloadable(path, f"{path}: no symbol {name}") from None
    return _symbols[path, name]


def run(req):
    ctypes.CDLL("libm.so.6", mode=os.RTLD_GLOBAL)
    try:
        launch = _symbol(req["runtime"], "zsim_launch", os.RTLD_GLOBAL)
        entry = ctypes.cast(_symbol(req["kernel"], "zsim_entry"), ctypes.c_void_p)
    except Unloadable as e:
        return {"ok": False, "code": UNLOADABLE, "path": e.path, "msg": e.reason}
    results = []
    for k, launch_run in enumerate(req["runs"]):
        reverse = launch_run["reverse"]
        bufs = []
        try:
            for spec in launch_run["buffers"]:
                bufs.append(Guarded(*spec))
            ptrs = (ctypes.c_void_p * max(1, len(bufs)))(*[b.ptr for b in bufs])
            grid = (ctypes.c_uint32 * 3)(*req["grid"])
            tg = (ctypes.c_uint32 * 3)(*req["threadgroup"])
            err = Err()
            launch(entry, ptrs, grid, tg, reverse, ctypes.byref(err))
            if err.code:
                return {"ok": False, "code": err.code, "sig": err.sig, "write": err.write,
                        "tg_bytes": err.tg_bytes, "thread": (err.thread.x, err.thread.y, err.thread.z),
                        "group": (err.group.x, err.group.y, err.group.z),
                        "msg": err.msg.decode(errors="replace"), "reverse": reverse, "run": k,
                        "fault": _locate(err.addr, bufs)}
            results.append([bufs[i].read() for i in req["outputs"]])
        finally:
            for b in bufs:
                b.free()
    return {"ok": True, "outputs": results}


WRAP = 2**32


def _locate(addr, bufs):
    """Where a fault address is, as (buffer index, byte offset from the kernel's pointer, storage
    start and end as offsets from that pointer, wrap), else the bare address.

    An address inside a buffer's guarded region has wrap 0. One 2**32 elements (or bytes) past a
    negative offset inside a buffer's storage has wrap 2**32 (bytes) or 2**32 * itemsize: the
    offset was computed in 32-bit unsigned arithmetic and wrapped around.
    """
    for i, b in enumerate(bufs):
        if b.base <= addr < b.base + b.total:
            return (i, addr - b.ptr, b.start - b.ptr, b.start + b.n - b.ptr, 0)
    for i, b in enumerate(bufs):
        for m in sorted({WRAP, WRAP * b.itemsize}, reverse=True):
            o = addr - b.ptr - m
            if b.start - b.ptr <= o < 0:
                return (i, addr - b.ptr, b.start - b.ptr, b.start + b.n - b.ptr, m)
    return addr


def main():
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from kernels must not corrupt the protocol
    inp = sys.stdin.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        req = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
        try:
            rep = run(req)
        except Exception as e:  # reported to the caller, the worker stays up
            rep = {"ok": False, "code": -1, "msg": f"{type(e).__name__}: {e}"}
        data = pickle.dumps(rep, protocol=5)
        out.write(struct.pack("<Q", len(data)) + data)
        out.flush()


if __name__ == "__main__":
    main()
