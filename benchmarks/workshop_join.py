"""A class joining a workshop: N participants arriving within a window, each timed from
opening the link to a kernel that executes code; p50 and p95, side by side.

Sides (``--sides``), each on a hub of its own, the same arrivals (participant ``i`` arrives
``i * window / N`` seconds after the first):

- ``jupyterhub``: plain JupyterHub; each person signs in on the login form (shared
  password), spawns, starts a kernel and executes code: the nearest thing plain
  JupyterHub has to joining.
- ``kioskhub``: KioskHub, the same steps, every user new (the spawn also makes the
  system account and home).
- ``kioskhub-prewarmed``: the same, with the accounts and homes made ahead by the
  workshop pre-warming's own code (``workshop_prewarm.Prewarm.make_seat``), as it does
  before an event's start: what pre-warming saves.
- ``workshop-cold``: KioskHub with workshops on and one event open now (put in the store
  as a teacher's page would), its seats' accounts and homes made ahead but no server
  started (``prewarm_servers: false``): ``GET /hub/join/<code>``, then ``POST`` it with
  ``display_name`` and the ``_xsrf`` cookie's value, as the join page's form does, then
  the server's progress, a kernel and code. When the hub answers the join link with 404
  (a build without the join handler) the side is reported as not measured, with that
  reason.
- ``workshop``: the same with the site's defaults for pre-warming: the hub's
  ``workshop-schedule`` service has the seats' servers started before the class arrives
  (the benchmark waits for all of them, and reports how long that took as
  ``prepared_ahead_s``).

Every participant joins from 127.0.0.1 under the default limit on failed join attempts
(10 a minute per address): only wrong codes count, so a class behind one address joins.
The materials repository is empty (no pull): the time measured ends at the kernel.

Target: p95 of "open → kernel executes" at most 5 s for the ``workshop`` side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time

from . import report
from .hub_client import HubClient, HubError, admin_client
from .hubs import (
    ADMIN,
    ADMIN_PASSWORD,
    USER_PASSWORD,
    BenchHub,
    start_kioskhub,
    start_plain_jupyterhub,
)
from .stats import Stopwatch, summarize, verdict

NAME = "workshop_join"
SIDES = ("jupyterhub", "kioskhub", "kioskhub-prewarmed", "workshop-cold", "workshop")
WORKSHOP_SIDES = ("workshop-cold", "workshop")
SCHEDULE_EVERY_S = 5
PREWARM_TIMEOUT_S = 900
STEPS = ("open", "server", "kernel", "execute")
CODE = "print(6 * 7)"
EXPECTED = "42"
TARGET_P95_S = 5.0


class JoinRouteMissing(HubError):
    """The hub answers the join link with 404: no join handler in this build."""


async def sign_in(client: HubClient, name: str) -> str:
    await client.login(name, USER_PASSWORD)
    await client.request_token(name)
    return name


async def join(client: HubClient, code: str, display_name: str) -> str:
    """Open the join link and send the form; the participant's hub user name."""
    link = f"{client.url}/hub/join/{code}"
    async with client.session.get(link, allow_redirects=False) as page:
        await page.read()
        if page.status == 404:
            raise JoinRouteMissing(f"GET /hub/join/<code> answered 404 ({link})")
        if page.status != 200:
            raise HubError(f"the join page answered {page.status}")
    form = {"display_name": display_name, "_xsrf": client._xsrf()}
    async with client.session.post(link, data=form, allow_redirects=False) as reply:
        body = await reply.text()
        if reply.status not in (302, 303):
            raise HubError(f"joining answered {reply.status}: {body[:200]}")
    async with client.session.get(
        f"{client.url}/hub/api/user", headers={"X-XSRFToken": client._xsrf()}
    ) as who:
        if who.status != 200:
            raise HubError(f"GET /hub/api/user after joining answered {who.status}")
        name = (await who.json())["name"]
    await client.request_token(name)
    return name


async def server_ready(client: HubClient, name: str, timeout: float) -> None:
    """Start the server unless joining already did, and wait until it answers."""
    status, reply, _ = await client.api("POST", f"/users/{name}/server", json={})
    if status not in (201, 202, 400):
        raise HubError(f"spawn answered {status}: {str(reply)[:200]}")
    events = await client.progress(name)
    if events is not None and not (events and events[-1].get("ready")):
        raise HubError(f"progress ended without ready: {events[-1:] or 'no events'}")
    await client.wait_server_status(name, time.monotonic() + timeout)


async def person(url: str, index: int, delay: float, side: str, code: str, timeout: float):
    await asyncio.sleep(delay)
    watch = Stopwatch()
    client = HubClient(url, connections=10)
    began = time.perf_counter()
    total = None
    try:
        with watch.lap("open"):
            if side in WORKSHOP_SIDES:
                name = await join(client, code, f"Participant {index + 1}")
            else:
                name = await sign_in(client, f"{side_prefix(side)}-{index:03d}")
        with watch.lap("server"):
            await server_ready(client, name, timeout)
        with watch.lap("kernel"):
            kernel = await client.start_kernel(name)
        with watch.lap("execute"):
            output = await client.execute(name, kernel, CODE, timeout=timeout)
            if output.strip() != EXPECTED:
                raise HubError(f"unexpected output {output.strip()[:80]!r}")
        total = time.perf_counter() - began
    except Exception:  # recorded in watch.failed by the lap that raised
        pass
    finally:
        await client.close()
    return watch, total


RUN = secrets.token_hex(2)
"""New names in every run, so that the KioskHub sides' users never have accounts yet."""


async def reported(side: str, one) -> tuple[Stopwatch, float | None]:
    watch, total = await one
    laps = " ".join(f"{step} {watch.laps[step]:.2f}s" for step in STEPS if step in watch.laps)
    failed = "".join(f"  FAILED at {step}: {why[:160]}" for step, why in watch.failed.items())
    report.progress(f"  {side:18s} {laps}{failed}")
    return watch, total


async def remove_accounts(hub: BenchHub, side: str, users: int) -> None:
    """Remove the system accounts this side made (KioskHub's own removal, which checks
    that each is the one KioskHub made for that user)."""
    from kioskhub.hub.schema.config_file import load_site  # noqa: PLC0415
    from kioskhub.hub.workshop_store import participant_name  # noqa: PLC0415
    from kioskhub.spawner.local_accounts import remove_system_account  # noqa: PLC0415

    site = load_site(hub.handle.config)
    names = [] if side in WORKSHOP_SIDES else [f"{side_prefix(side)}-{i:03d}" for i in range(users)]
    for event_id in EVENTS:
        names += [participant_name(event_id, n) for n in range(1, users + 1)]
    for name in names:
        with contextlib.suppress(Exception):
            await remove_system_account(site, name, site.home.root / name)


EVENTS: list[str] = []
"""The events the workshop side made (their seats' accounts are removed after)."""


def side_prefix(side: str) -> str:
    kind = {"jupyterhub": "plain", "kioskhub": "cold", "kioskhub-prewarmed": "warm"}[side]
    return f"{kind}{RUN}"


def start_side(side: str, users: int) -> BenchHub:
    if side == "jupyterhub":
        return start_plain_jupyterhub("join", concurrent_spawn_limit=max(100, users))
    if side in WORKSHOP_SIDES:
        workshops = {
            "enabled": True,
            "prewarm_seats": users,
            "prewarm_servers": side == "workshop",
            "schedule_every": SCHEDULE_EVERY_S,
        }
        return start_kioskhub("join", workshops=workshops)
    return start_kioskhub("join")


async def prepare(hub: BenchHub, side: str, users: int) -> tuple[str, float]:
    """The event's join code (workshop side), and the seconds spent ahead of the class."""
    from kioskhub.hub import workshop_store as store  # noqa: PLC0415 (KioskHub sides only)
    from kioskhub.hub.schema.config_file import load_site  # noqa: PLC0415
    from kioskhub.hub.workshop_prewarm import Prewarm  # noqa: PLC0415

    site = load_site(hub.handle.config)
    began = time.perf_counter()
    if side == "kioskhub-prewarmed":
        prewarm = Prewarm(site)
        for index in range(users):
            await prewarm.make_seat(f"{side_prefix(side)}-{index:03d}")
        return "", time.perf_counter() - began
    if side not in WORKSHOP_SIDES:
        return "", 0.0
    now = time.time()
    code = store.new_code()
    event = store.Event(
        store.new_event_id(),
        "Benchmark class",
        "admin",
        site.environments[0].name,
        site.profiles[0].name,
        "",
        "main",
        users,
        now - 60,
        now + 7200,
        600.0,
        code,
        now,
    )
    store.create_event(store.database(site.hub.state_dir), event)
    EVENTS.append(event.event_id)
    if side == "workshop-cold":
        await Prewarm(site).run_once()  # accounts and homes, as the schedule would
    else:
        seats = [store.participant_name(event.event_id, n) for n in range(1, users + 1)]
        await servers_running(hub, seats)
    return code, time.perf_counter() - began


async def servers_running(hub: BenchHub, names: list[str]) -> None:
    """Wait until the hub's pre-warming has every seat's server running."""
    client = await admin_client(hub.url, ADMIN, ADMIN_PASSWORD)
    deadline = time.monotonic() + PREWARM_TIMEOUT_S
    try:
        waiting = list(names)
        while waiting:
            if time.monotonic() > deadline:
                raise HubError(f"{len(waiting)} seats not pre-warmed in {PREWARM_TIMEOUT_S} s")
            status, user, _ = await client.api("GET", f"/users/{waiting[0]}")
            server = (user.get("servers") or {}).get("") if status == 200 else None
            if server and server.get("ready"):
                waiting.pop(0)
                continue
            await asyncio.sleep(1)
        report.progress(f"workshop: {len(names)} seats' servers pre-warmed")
    finally:
        await client.close()


async def run_side(side: str, users: int, window: float, timeout: float) -> dict:
    hub = start_side(side, users)
    try:
        code, ahead = await prepare(hub, side, users) if side != "jupyterhub" else ("", 0.0)
        report.progress(f"{side}: {users} people over {window:.0f} s")
        results = await asyncio.gather(
            *(
                reported(side, person(hub.url, i, i * window / users, side, code, timeout))
                for i in range(users)
            )
        )
    finally:
        with contextlib.suppress(Exception):
            hub.stop()
        if side != "jupyterhub":
            await remove_accounts(hub, side, users)
        hub.remove()
    missing = [
        w.failed["open"] for w, _ in results if "JoinRouteMissing" in w.failed.get("open", "")
    ]
    totals = [t for _, t in results if t is not None]
    steps = {
        step: summarize(
            [w.laps[step] for w, _ in results if step in w.laps and step not in w.failed]
        )
        for step in STEPS
    }
    return {
        "side": side,
        "users": users,
        "window_s": window,
        "prepared_ahead_s": ahead,
        "measured": not missing,
        "not_measured_because": missing[0] if missing else None,
        "complete": len(totals),
        "open_to_kernel_s": summarize(totals),
        "steps": steps,
        "errors": sorted({why for w, _ in results for why in w.failed.values()})[:10],
    }


def print_results(runs: list[dict], cond: dict) -> None:
    print()
    print(report.conditions_line(cond))
    rows = []
    for run in runs:
        lat = run["open_to_kernel_s"]
        rows.append(
            [
                run["side"],
                f"{run['complete']}/{run['users']}",
                lat["p50"],
                lat["p95"],
                lat["max"],
                *(run["steps"][s]["p95"] for s in STEPS),
            ]
        )
    report.print_table(
        ["side", "complete", "p50 s", "p95 s", "max s", *(f"{s} p95 s" for s in STEPS)],
        rows,
        title="Open the link → kernel executes",
    )
    for run in runs:
        if not run["measured"]:
            print(f"{run['side']}: not measured: {run['not_measured_because']}")
        elif run["side"] == "workshop":
            p95 = run["open_to_kernel_s"]["p95"]
            met = p95 is not None and p95 <= TARGET_P95_S and run["complete"] == run["users"]
            print(f"workshop: p95 {p95} s, target ≤ {TARGET_P95_S} s: {verdict(met)}")
        for error in run["errors"]:
            print(f"  {run['side']} error: {error[:200]}")


def target_of(runs: list[dict]) -> dict:
    """The target's check (workshop p95 ≤ 5 s, every participant complete) for run_all,
    or why it was not measured."""
    workshop = next((r for r in runs if r["side"] == "workshop"), None)
    if workshop is None:
        return {}
    if not workshop["measured"]:
        return {"measured": False, "reason": workshop["not_measured_because"]}
    p95 = workshop["open_to_kernel_s"]["p95"]
    met = p95 is not None and p95 <= TARGET_P95_S and workshop["complete"] == workshop["users"]
    target = f"workshop join: p95 open → kernel ≤ {TARGET_P95_S:.0f} s"
    return {"targets": [{"target": target, "met": met, "ratio": (p95 or 0) / TARGET_P95_S}]}


def plot(runs: list[dict], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=7, height=4)
    ax = axes[0]
    names = [r["side"] for r in runs]
    p50 = [r["open_to_kernel_s"]["p50"] or 0 for r in runs]
    p95 = [r["open_to_kernel_s"]["p95"] or 0 for r in runs]
    ax.bar(names, p95, alpha=0.35, label="p95")
    ax.bar(names, p50, label="p50")
    ax.axhline(TARGET_P95_S, linestyle="--", color="grey", label="target p95")
    ax.set_ylabel("seconds, open → kernel executes")
    ax.set_title(f"{runs[0]['users']} people joining within {runs[0]['window_s']:.0f} s")
    ax.legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run(args) -> dict:
    cond = report.conditions(N=args.users, window_s=args.window, sides=list(args.sides))
    print(report.conditions_line(cond), flush=True)
    runs = [await run_side(side, args.users, args.window, args.timeout) for side in args.sides]
    print_results(runs, cond)
    result = {"benchmark": NAME, "conditions": cond, "code": CODE, "runs": runs, **target_of(runs)}
    report.write_json(NAME, result)
    plot(runs, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--users", type=int, default=30, help="participants (default 30)")
    p.add_argument("--window", type=float, default=60.0, help="arrival window, s (default 60)")
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--timeout", type=float, default=180.0, help="per step, s")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
