"""Readable console: stages running at once share one status line that never interleaves with stage lines; no colour
codes off a terminal; Ray Train's print patch (every worker line twice) is off; Tune's banners only with --verbose."""

from __future__ import annotations

import io
import threading

from layerlab.progress import BoardBar, StatusBoard, progress_bar, report_to


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_parallel_stage_progress_in_logs_is_whole_lines_without_escape_codes() -> None:
    lines: list[str] = []
    board = StatusBoard(lines.append, stream=_Stream(tty=False), log_interval=0.0)

    def stage(key: str, n: int) -> None:
        with report_to(board, key):
            board.say(f"[run] {key}")
            bar = progress_bar(n, key, "trial")
            assert isinstance(bar, BoardBar)
            for _ in range(n):
                bar.update(1)
            bar.close()
        board.say(f"[done] {key}")

    threads = [threading.Thread(target=stage, args=(f"probe/d/m{i}/sid", 50)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    board.close()
    assert not board.stream.getvalue()  # nothing drawn off a terminal
    assert all("\x1b" not in line and "\r" not in line and "\n" not in line for line in lines)
    assert sorted(line for line in lines if line.startswith("[")) == sorted(
        [f"[run] probe/d/m{i}/sid" for i in range(4)] + [f"[done] probe/d/m{i}/sid" for i in range(4)])
    status = [line for line in lines if line.startswith("running: ")]
    assert status and any(" trial" in line for line in status)
    assert progress_bar(3, "x", "utt", enabled=False).__class__.__name__ == "tqdm"  # outside a study: a normal bar


def test_on_a_terminal_the_status_line_is_cleared_before_each_stage_line() -> None:
    out: list[str] = []
    stream = _Stream(tty=True)
    board = StatusBoard(lambda line: (out.append(stream.getvalue()), stream.write(line + "\n")), stream=stream)
    with report_to(board, "extract/d/ge2e"):
        progress_bar(10, "extract", "utt").update(4)
        board.say("[done] corpus/d")
    text = stream.getvalue()
    assert "running: extract/d/ge2e 4/10 utt" in text
    before_line = text[: text.index("[done] corpus/d")]
    assert before_line.endswith("\r\x1b[K")  # the status line was erased, so the stage line starts clean


def test_worker_lines_once_and_no_colour_codes_off_a_terminal(monkeypatch) -> None:
    from layerlab import runtime
    from layerlab.probe.sweep import quiet_tune
    from layerlab.train.config import load_config
    from layerlab.train.run import worker_env

    assert worker_env(load_config("supervised"))["RAY_TRAIN_ENABLE_PRINT_PATCH"] == "0"
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    monkeypatch.setattr("sys.stdout", _Stream(tty=False))
    runtime.quiet_console()
    import os

    assert os.environ["RAY_COLOR_PREFIX"] == "0"
    quiet_tune(False)
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"  # the legacy engine at verbosity 0 prints no experiment box
    quiet_tune(True)
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "1"
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT")
