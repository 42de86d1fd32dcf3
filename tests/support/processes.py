"""Stopping the servers the tests start (redis-server, versitygw, Prometheus, the kube parts)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` s; a no-op once it is gone."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
