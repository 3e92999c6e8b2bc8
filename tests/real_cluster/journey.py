"""A scientist's journey on a hub that the Helm chart installed in a real cluster.

Sign in, start a server, run code in its kernel, write to the home, stop the server, start
it again and read the file back (the home is a claim that outlives the pod), then stop.
Each step prints what it did; a failing step says what it saw and the command exits 1.
Run by helm/kioskhub/ci/e2e-real-cluster.sh; by hand::

    .venv/bin/python -m tests.real_cluster.journey --hub-url http://127.0.0.1:18000 \\
        --user ada --password "$PASSWORD"
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from tests.support.user_session import signed_in


class JourneyFailed(Exception):
    """A step did not do what a user would expect; the message says what was seen."""


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def start(user, timeout: float) -> None:
    events = user.spawn(timeout=timeout)
    last = events[-1] if events else {}
    if not last.get("ready"):
        raise JourneyFailed(f"the server did not start: {last.get('message', 'no progress')}")


def journey(hub_url: str, username: str, password: str, timeout: float) -> None:
    step(f"signing in to {hub_url} as {username}")
    user = signed_in(hub_url, username, password)
    step("starting the default server (environment and profile as the spawn form offers)")
    start(user, timeout)
    step("running code in a kernel")
    answer = user.execute("import os; print(6 * 7, os.getuid())", timeout=120)
    if answer["error"] or not answer["stdout"].startswith("42 "):
        raise JourneyFailed(f"the kernel answered {answer}")
    if answer["stdout"].split()[1] == "0":
        raise JourneyFailed("the server runs as root")
    marker = uuid.uuid4().hex
    written = user.execute(f"open('e2e-marker.txt', 'w').write({marker!r})")
    if written["error"]:
        raise JourneyFailed(f"the home is not writable: {written['error']}")
    step("stopping the server")
    user.stop_server(timeout=120)
    step("starting it again: the home must still hold the file")
    start(user, timeout)
    read = user.execute("print(open('e2e-marker.txt').read())")
    if read["stdout"].strip() != marker:
        raise JourneyFailed(f"the home lost the file written before the restart: {read}")
    user.stop_server(timeout=120)
    step("done: sign-in, server, kernel, persistent home, stop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.real_cluster.journey")
    parser.add_argument("--hub-url", required=True)
    parser.add_argument("--user", default="ada")
    parser.add_argument("--password", required=True)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for a start")
    args = parser.parse_args(argv)
    try:
        journey(args.hub_url.rstrip("/"), args.user, args.password, args.timeout)
    except (JourneyFailed, RuntimeError, TimeoutError, OSError) as error:
        print(f"journey failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
