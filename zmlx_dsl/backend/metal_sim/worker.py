"""A persistent worker process that runs kernels, so a crash or endless loop never takes the caller down."""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import MetalSimError

WORKER = Path(__file__).resolve().parent / "worker_process.py"


class Worker:
    """Sends launch requests to `worker_process.py`; restarts it after a crash or a timeout."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._runtime = ""
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-I", "-S", str(WORKER)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, bufsize=0)
        return self._proc

    def stop(self) -> None:
        """Kill the worker process we started (if any)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request/reply; MetalSimError if the worker dies or exceeds `timeout` seconds."""
        with self._lock:
            if request["runtime"] != self._runtime:  # kernels bind to the first runtime a worker loads
                self.stop()
                self._runtime = request["runtime"]
            proc = self._start()
            data = pickle.dumps(request, protocol=5)
            try:
                proc.stdin.write(struct.pack("<Q", len(data)) + data)
                head = self._read(proc, 8, timeout)
                return pickle.loads(self._read(proc, struct.unpack("<Q", head)[0], timeout))
            except BrokenPipeError:
                pass
            code = proc.poll()
            self.stop()
            raise MetalSimError(f"metal-sim: the worker process died while running the kernel "
                                f"(exit status {code}); it will be restarted")

    def _read(self, proc: subprocess.Popen, n: int, timeout: float) -> bytes:
        buf = bytearray()
        fd = proc.stdout.fileno()
        while len(buf) < n:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                self.stop()
                raise MetalSimError(f"metal-sim: the kernel did not finish within {timeout:g} s "
                                    f"(endless loop, or a thread spinning on memory another thread "
                                    f"never writes); the worker was killed")
            chunk = os.read(fd, min(n - len(buf), 1 << 22))
            if not chunk:
                raise BrokenPipeError
            buf += chunk
        return bytes(buf)


WORKER_PROCESS = Worker()
