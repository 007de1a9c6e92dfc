"""Log lines of two processes on one stream stay whole lines.

`coterm run`'s two processes write to the same standard error. A line written in two parts (the
text, then its newline, as `print` does when the stream writes through, e.g. with
PYTHONUNBUFFERED=1) can be cut in two by the other process's line: a log shipper then reads
neither as JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

WRITER = """
import sys
from processor.log_setup import configure_logging
import structlog
configure_logging(sys.stderr)
log = structlog.get_logger("coterm.test")
for n in range(4000):
    log.info("line.written", writer=sys.argv[1], n=n, padding="x" * 200)
"""


def test_two_processes_writing_to_one_stream_leave_every_line_whole(tmp_path: Path) -> None:
    out = tmp_path / "both.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the stream writes through: the case that cut lines
    with out.open("w") as stream:
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, name], stderr=stream, env=env, cwd=Path.cwd())
                   for name in ("a", "b")]
        assert [w.wait(120) for w in writers] == [0, 0]
    lines = out.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # fails on a line another one cut in two
    assert len(parsed) == 8000
    assert {(p["writer"], p["n"]) for p in parsed} == {(w, n) for w in "ab" for n in range(4000)}
