"""Server logs: the writer process rotates at the cap, and the tail reads only the end."""

from __future__ import annotations

import os
import threading
import time

from kioskhub.spawner.server_log import copy_capped, open_capped_log, tail


def test_writer_process_rotates_at_the_cap_and_keeps_one_older_file(tmp_path):
    path = tmp_path / "logs" / "ada.log"
    pipe = open_capped_log(path, max_bytes=100_000)
    line = b"x" * 99 + b"\n"
    for _ in range(3500):
        pipe.write(line)
    pipe.write(b"the last line\n")
    pipe.close()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ends_with(path, b"the last line\n"):
        time.sleep(0.05)

    rotated = path.with_name("ada.log.1")
    assert path.stat().st_size <= 100_000
    assert rotated.stat().st_size <= 100_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["ada.log", "ada.log.1"]
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert tail(path, 1) == "the last line"


def ends_with(path, text: bytes) -> bool:
    """Whether ``path`` ends with ``text`` now (the writer may be renaming it away)."""
    try:
        return path.read_bytes().endswith(text)
    except FileNotFoundError:
        return False


def test_copy_capped_never_exceeds_the_cap(tmp_path):
    path = tmp_path / "server.log"
    read_end, write_end = os.pipe()

    def flood():
        with os.fdopen(write_end, "wb") as pipe:
            for number in range(20_000):
                pipe.write(f"line {number}\n".encode())

    writer = threading.Thread(target=flood)
    writer.start()
    copy_capped(read_end, path, 50_000)
    writer.join()
    os.close(read_end)

    assert path.stat().st_size <= 50_000
    assert tail(path, 2) == "line 19998\nline 19999"


def test_tail_of_a_huge_log_reads_only_its_end(tmp_path):
    path = tmp_path / "huge.log"
    with open(path, "wb") as log:
        log.truncate(16 * 2**30)
        log.write(b"first\n")
        log.seek(0, os.SEEK_END)
        log.write(b"\n".join(f"line {n}".encode() for n in range(30)) + b"\n")
    started = time.monotonic()
    assert tail(path, 3) == "line 27\nline 28\nline 29"
    assert time.monotonic() - started < 1


def test_tail_without_a_log(tmp_path):
    assert tail(tmp_path / "missing.log", 5) == "(no log)"
    os.mkfifo(tmp_path / "fifo.log")
    assert tail(tmp_path / "fifo.log", 5) == "(no log)"
