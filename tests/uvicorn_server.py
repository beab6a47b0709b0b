"""Run an ASGI app in a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class UvicornServer:
    def __init__(
        self, factory: str, env: dict[str, str] | None = None, workers: int = 1, extra_args: list[str] | None = None
    ) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--log-level", "warning", "--workers", str(workers), *(extra_args or [])]
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"idemscope-uvicorn-{self.port}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("uvicorn did not start within 20 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-request, with no chance to release anything."""
        self.process.kill()
        self.process.wait(10)

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def stop(self) -> None:
        died = self.process.poll()
        if died is not None and died != -9:  # it ended by itself: say why before the log goes
            print(f"uvicorn exited with {died}:\n{self.log_tail()}", file=sys.stderr)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)
