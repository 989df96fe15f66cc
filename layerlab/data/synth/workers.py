"""Generator processes: fresh Python interpreters that render utterances, results in submission order.

Workers are started with ``python -m layerlab.data.synth.workers`` rather than multiprocessing's
spawn, which would re-import the caller's ``__main__`` (e.g. the whole ``layerlab`` CLI with torch)
in every worker and make each per-utterance fork heavier. Frames on the pipes are length-prefixed
pickles; plan ``i`` goes to worker ``i % n`` so results are read back in plan order.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from layerlab.data.synth.config import NoiseConfig, ReverbConfig

_HEADER = struct.Struct("<Q")
_IN_FLIGHT = 4  # tasks queued per worker: small frames, far below a pipe buffer, so no deadlock


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("stream closed")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError(f"truncated frame ({len(data)} of {size} bytes)")
    return pickle.loads(data)


class RenderPool:
    """``workers`` generator processes; ``imap(plans)`` yields their results in plan order."""

    def __init__(self, workers: int, noise: NoiseConfig, reverb: ReverbConfig) -> None:
        package_root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")  # single-threaded: clean forks
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(workers):
                proc = subprocess.Popen([sys.executable, "-m", "layerlab.data.synth.workers"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                self._procs.append(proc)
                _send(proc.stdin, (noise, reverb))  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise

    def imap(self, plans: Iterable[Any]) -> Iterator[Any]:
        """Render every plan; yields results in the order of ``plans``."""
        pending: deque[int] = deque()  # worker index of each submitted, unread plan, in order
        n = len(self._procs)
        it = iter(enumerate(plans))
        exhausted = False
        while True:
            while not exhausted and len(pending) < _IN_FLIGHT * n:
                try:
                    i, plan = next(it)
                except StopIteration:
                    exhausted = True
                    break
                self._call(i % n, _send, plan)
                pending.append(i % n)
            if not pending:
                return
            yield self._call(pending.popleft(), _recv)

    def _call(self, w: int, fn: Any, *args: Any) -> Any:
        proc = self._procs[w]
        try:
            return fn(proc.stdin if fn is _send else proc.stdout, *args)
        except (EOFError, BrokenPipeError) as exc:
            code = proc.poll()
            raise RuntimeError(f"synth generator process {w} (pid {proc.pid}) stopped (exit code {code}): {exc}; see its messages above") from exc

    def close(self) -> None:
        """Stop the workers (closing stdin ends them; stragglers are killed)."""
        for proc in self._procs:
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self._procs = []

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main() -> None:
    """Worker loop: read (noise, reverb), then plans until EOF; write one result per plan."""
    from layerlab.data.synth.render import init_worker, render

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed to stdout (by Python or libespeak-ng) goes to stderr, not the protocol
    inp = sys.stdin.buffer
    init_worker()
    noise, reverb = _recv(inp)
    while True:
        try:
            plan = _recv(inp)
        except EOFError:
            break
        _send(out, render(plan, noise, reverb))
    out.close()


if __name__ == "__main__":
    main()
