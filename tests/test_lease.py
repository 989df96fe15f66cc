"""One writer per output: the lease at the root of --out (local disk and moto S3), real concurrent processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layerlab import lease, storage
from layerlab.cli import app

REPO = Path(__file__).resolve().parents[1]

#: a writer process: waits for a common start time, takes the lease, holds it for a while, then releases it
WRITER = """
import sys, time
from layerlab import lease
out, start, hold = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
try:
    with lease.held(out, "test writer"):
        print("won", flush=True)
        time.sleep(hold)
except lease.LeaseHeld as exc:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _race(out: str, n: int = 2, hold: float = 2.0) -> list[subprocess.CompletedProcess]:
    start = time.time() + 4.0  # every process has imported layerlab.lease by then
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, out, str(start), str(hold)], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def _check_one_winner(runs: list[subprocess.CompletedProcess], out: str) -> None:
    winners = [r for r in runs if r.returncode == 0]
    losers = [r for r in runs if r.returncode != 0]
    assert len(winners) == 1 and "won" in winners[0].stdout, [(r.returncode, r.stdout, r.stderr) for r in runs]
    for r in losers:
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "another writer holds this output: test writer (pid" in lines[0] and "--force" in lines[0]
    assert not storage.exists(storage.join(out, lease.LEASE_NAME))


def test_two_concurrent_writers_on_a_local_out(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    _check_one_winner(_race(out), out)


def test_two_concurrent_writers_on_s3(s3_bucket: str) -> None:
    out = f"{s3_bucket}/runs/out"
    _check_one_winner(_race(out), out)


def test_second_writer_error_names_the_holder_and_a_stale_lease_needs_force(tmp_path: Path, monkeypatch) -> None:
    out = str(tmp_path / "out")
    first = lease.acquire(out, "layerlab study")
    try:
        with pytest.raises(lease.LeaseHeld) as err:
            lease.acquire(out, "layerlab probe", force=True)  # --force never takes a live lease
        text = str(err.value)
        assert "\n" not in text and "layerlab study" in text and f"pid {os.getpid()}" in text and "last heartbeat" in text
        record = json.loads((tmp_path / "out" / lease.LEASE_NAME).read_text())
        assert {"holder", "command", "host", "pid", "started_at", "heartbeat_at"} <= set(record)
    finally:
        first.release()
    assert not (tmp_path / "out" / lease.LEASE_NAME).exists()


def _dead_holder(out: str) -> int:
    """A process that takes the lease and is killed (SIGKILL): its lease stays, without heartbeats."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, out, "0", "600"], env=_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "won"
    proc.kill()
    proc.wait(timeout=30)
    return proc.pid


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_stale_lease_is_taken_over_with_force_and_the_takeover_is_recorded(tmp_path: Path, monkeypatch, where: str, request) -> None:
    out = str(tmp_path / "out") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/out"
    pid = _dead_holder(out)
    monkeypatch.setenv(lease.STALE_ENV, "1")
    time.sleep(1.5)
    with pytest.raises(lease.LeaseHeld, match=f"stale lease .* test writer \\(pid {pid} .*rerun with --force"):
        lease.acquire(out, "layerlab study")
    taken = lease.acquire(out, "layerlab study", force=True)
    try:
        record = storage.read_json(storage.join(out, lease.LEASE_NAME))
        assert record["holder"] == taken.record["holder"] and record["took_over"]["pid"] == pid
        files = storage.list_files(storage.join(out, lease.TAKEOVERS), ".json")
        assert len(files) == 1 and storage.read_json(files[0])["previous"]["pid"] == pid
    finally:
        taken.release()


def test_heartbeat_keeps_a_long_run_live(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(lease.STALE_ENV, "1.2")
    out = str(tmp_path / "out")
    with lease.held(out, "layerlab train"):
        time.sleep(2.5)  # more than the stale limit: only the heartbeat thread keeps it live
        with pytest.raises(lease.LeaseHeld, match="another writer holds"):
            lease.acquire(out, "layerlab train", force=True)


def test_an_out_inside_a_live_writers_out_is_refused(tmp_path: Path) -> None:
    with lease.held(str(tmp_path / "study"), "layerlab study"):
        with pytest.raises(lease.LeaseHeld, match="lies inside .*study, the output of a running writer: layerlab study"):
            lease.acquire(str(tmp_path / "study" / "probe" / "x"), "layerlab probe")


def test_every_writing_command_takes_the_lease(tmp_path: Path) -> None:
    """study, probe, train, extract and cka on an --out another process holds: one error line naming it, exit 2."""
    from layerlab.data.shards import ShardWriter

    data = str(tmp_path / "data")
    with ShardWriter(data, "empty"):
        pass
    cfg = tmp_path / "study.yaml"
    cfg.write_text("datasets: {d: {path: %s}}\nmodels: {fbank: {spec: fbank}}\n" % data)
    out = str(tmp_path / "out")
    holder = subprocess.Popen([sys.executable, "-c", WRITER, out, "0", "600"], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "won"
        for args in (["study", str(cfg), "--out", out], ["probe", "--cache", data, "--task", "sid", "--out", out],
                     ["train", "supervised", "--data", data, "--out", out], ["extract", "--model", "fbank", "--data", data, "--out", out],
                     ["cka", "--a", data, "--out", out]):
            result = CliRunner().invoke(app, args)
            errors = [line for line in result.output.splitlines() if line.startswith("error:")]
            assert result.exit_code == 2 and len(errors) == 1, (args, result.output)
            assert f"test writer (pid {holder.pid}" in errors[0] and "--force" in errors[0], errors[0]
            help_text = CliRunner().invoke(app, [*args[:2 if args[0] == "train" else 1], "--help"]).output
            assert "--force" in help_text, args[0]
    finally:
        holder.kill()
        holder.wait(timeout=30)
