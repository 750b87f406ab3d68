"""The processor under test: started as a child process (`python -m fuzz`), or handed in by a
test that started its own. Either way the run only watches it: same pid alive at the end, and
one start in its log (a processor that crashed and was restarted would not pass unseen)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from processor.processor_login import processor_environment
from processor.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parent.parent
STARTED = "started successfully"  # FastStream's line once the app runs


@dataclass(frozen=True, kw_only=True)
class Watched:
    """A running processor process: its pid at start, and its log."""

    process: subprocess.Popen
    log_path: Path
    pid: int

    @classmethod
    def of(cls, process: subprocess.Popen, log_path: Path) -> Watched:
        return cls(process=process, log_path=log_path, pid=process.pid)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def starts(self) -> int:
        return self.log().count(STARTED)

    def error_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if " ERROR " in line or "Traceback" in line or line.startswith("ERROR")]


def start_processor(
    *, settings: ProcessorSettings, log_path: Path, migrate: bool, timeout: float = 90, extra_env: dict[str, str] | None = None
) -> Watched:
    """`python -m processor.cli run` as a child; returns once its log says it started."""
    argv = [sys.executable, "-m", "processor.cli", "run", *([] if migrate else ["--no-migrate"])]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = processor_environment(settings) | (extra_env or {})
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    watched = Watched.of(process, log_path)
    deadline = time.monotonic() + timeout
    while watched.starts() == 0:
        if process.poll() is not None:
            raise RuntimeError(f"the processor exited with {process.returncode}:\n{watched.log()[-3000:]}")
        if time.monotonic() > deadline:
            stop_processor(watched)
            raise RuntimeError(f"the processor did not start within {timeout}s:\n{watched.log()[-3000:]}")
        time.sleep(0.1)
    return watched


def stop_processor(watched: Watched, *, timeout: float = 45) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it does not end in time; only this pid."""
    if watched.process.poll() is not None:
        return
    watched.process.send_signal(signal.SIGTERM)
    try:
        watched.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        watched.process.kill()
        watched.process.wait(timeout=10)
