"""VM start: what a user waits for, through the hub, for a server in a VM and in a pod.

Two KioskHubs run side by side, one per variant, each with the same profile (1 CPU, 2 GB):

- ``openstack``: ``spawner.backend: openstack`` on the OpenStack simulation
  (``tests/openstack_sim``) with a real Keystone (``tests/support/keystone.py``), whose
  compute boots a real qemu VM from the KioskHub VM image (``tests/openstack_sim/vm_image.py``,
  built once and cached where the tests keep it) with the cloud-init user-data the hub
  rendered; flavor ``m1.bench`` (1 vCPU, 2048 MB). KVM when it works on this machine, software
  emulation (TCG) otherwise: the conditions say which;
- ``podman``: ``spawner.backend: podman`` (a pod of the site base image, ``kioskhub image
  build-base``), as in ``benchmarks/pods.py``.
- ``openstack, generic image`` (only when asked for): the same hub and cloud, but the VM boots
  the generic image (the test image with podman, ``podman_recipe``), whose cloud-init pulls
  the default environment's container image (the site base image, pushed first to a registry
  on loopback) and runs the server in it with podman, as ``openstack.image`` does for
  environments without a Glance image of their own.

Each starts N servers one at a time, the order alternating, each timed from the API spawn
request: the progress stream's steps as they arrive, the server ready (progress says ready and
``/user/<name>/api/status`` answers 200 through the proxy), and a kernel started through the
proxy that prints ``42``. For the VM the timeline is broken down further: the VM's serial
console (the kernel's first line, the image's init bringing up the network, each of
cloud-init's stages ending) and the server's first call back to the hub's API (its first
activity report, read from the hub's log). Then the server is stopped (the VM deleted).

Without a piece that a variant needs (Keystone's venv, qemu, podman, the base image), that
variant is not measured and the JSON says why.

    .venv/bin/python -m benchmarks.vm_start -n 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from . import report
from .hub_client import HubClient, admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, BenchHub, open_folder, start_kioskhub
from .stats import ratio, summarize

NAME = "vm_start"
VARIANTS = ("openstack", "podman", "openstack, generic image")
BOOT_TIMEOUT = 540
GENERIC_BOOT_TIMEOUT = 1200
"""The generic image pulls the environment's container image (~0.9 GB) under emulation."""
HOST_FROM_GUEST = "10.0.2.2"
"""The host's loopback as qemu's user network shows it to the VM."""
REPO = Path(__file__).resolve().parents[1]
IMAGE_CACHE = REPO / ".pytest_cache" / "d" / "kioskhub-vm-images"
"""Where the tests' fixture keeps the VM image (pytest's cache), so both share one build."""
FLAVOR = ("m1.bench", 1, 2048, 10)
PROFILE = {"name": "small", "display_name": "Small", "cpu": 1, "memory": "2G", "default": True}
CELL, CELL_OUTPUT = "print(6 * 7)", "42"

CONSOLE_MARKS = (
    ("init: network up", re.compile(r"kioskhub-vm-init: network up")),
    ("cloud-init init --local done", re.compile(r"cloud-init init --local: ")),
    ("cloud-init init done", re.compile(r"cloud-init init: ")),
    ("cloud-init config done", re.compile(r"cloud-init modules --mode config: ")),
    ("cloud-init final done", re.compile(r"cloud-init modules --mode final: ")),
)
"""Lines of the VM's serial console, timed when they first appear (read every 0.5 s). The
kernel is quiet: the image's init writes the first line, once the network is up."""
HUB_CALLBACK = (r"^\[I (\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}}) [^\]]*\] "
                r"200 POST /hub/api/users/{name}/activity \({name}@")
"""jupyterhub-singleuser's first report of activity, as it starts, in the hub's log."""


# ---- what is missing ------------------------------------------------------------------------


def openstack_missing() -> str | None:
    """Why VMs cannot be measured on this machine now, or None when they can."""
    from tests.openstack_sim import qemu, vm_image
    from tests.support.keystone import KEYSTONE_VENV

    missing = sorted(set(qemu.missing_tools() + vm_image.missing_tools()))
    if missing:
        return f"install the Debian package(s) {' '.join(missing)}"
    if not (KEYSTONE_VENV / "bin" / "python").exists():
        return "Keystone's venv is missing: run `make .venv-keystone/.installed`"
    return None


def podman_missing() -> str | None:
    """Why pods cannot be measured on this machine now, or None when they can."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    from kioskhub.spawner.pod_image import BaseImageRecipe
    from kioskhub.spawner.podman_cli import podman_command, podman_env

    image = BaseImageRecipe().image_ref
    found = subprocess.run(podman_command("image", "exists", image), env=podman_env(),
                           capture_output=True, timeout=60)
    if found.returncode != 0:
        return (f"the site base image {image} is not in podman's storage; build it once "
                "with `.venv/bin/kioskhub image build-base`")
    return None


def generic_missing() -> str | None:
    """Why the generic image cannot be measured: what VMs and pods need, and a registry."""
    from tests.support.registry import registry_program

    if why := openstack_missing() or podman_missing():
        return why
    try:
        registry_program()
    except FileNotFoundError as error:
        return str(error)
    return None


# ---- the timeline of one start ------------------------------------------------------------


def console_marks(text: str, seen: dict[str, float], now: float) -> None:
    """Time (``now``) each of ``CONSOLE_MARKS`` that ``text`` shows for the first time."""
    for label, pattern in CONSOLE_MARKS:
        if label not in seen and pattern.search(text):
            seen[label] = now


def hub_callback_at(log_text: str, name: str, since_epoch: float) -> float | None:
    """Seconds after ``since_epoch`` of the first activity report of ``name``'s server
    logged after it."""
    pattern = re.compile(HUB_CALLBACK.format(name=re.escape(name)), re.M)
    for match in pattern.finditer(log_text):
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if stamp >= since_epoch:
            return stamp - since_epoch
    return None


async def watch_console(folder: Path, earlier: set[Path], began: float,
                        seen: dict[str, float]) -> None:
    """Until cancelled: time the console marks of the VM that appears under ``folder``
    (``earlier``: the consoles of VMs started before, whose folders stay)."""
    while True:
        consoles = [path for path in folder.glob("vm-*/console.log") if path not in earlier]
        if consoles:
            with contextlib.suppress(OSError):
                text = consoles[-1].read_text(errors="replace")
                console_marks(text, seen, time.perf_counter() - began)
        await asyncio.sleep(0.5)


def steps_of(events: list[dict]) -> list[tuple[str, float]]:
    """The progress stream's steps as ``(message, seconds)``; JupyterHub's first "Server
    requested" and the final ready event are named as such."""
    steps = []
    for event in events:
        message = event.get("message", "")
        if event.get("ready"):
            message = "progress: ready"
        steps.append((message, event["at"]))
    return steps


def step_label(message: str) -> str:
    """A step's message without what differs from start to start (names, addresses)."""
    rules = (
        (r"^Requesting VM .*", "Nova: server requested (BUILD)"),
        (r"^VM .* is up at .*", "Nova: ACTIVE, cloud-init starts"),
        (r"^OpenStack: flavor .*", "OpenStack: flavor, image"),
        (r"^Your home volume .*", "home volume"),
        (r"^Made your home volume.*", "home volume made"),
        (r"^Security group .*", "security group"),
    )
    for pattern, label in rules:
        if re.match(pattern, message):
            return label
    message = re.sub(r"\bkh-[0-9a-f]{8}-vm-\d{3}\b", "<pod>", message)
    return re.sub(r"\s*\(localhost/[^)]*\)", "", message)[:60]


async def start_once(client: HubClient, hub: BenchHub, name: str, vm_folder: Path | None,
                     timeout: float) -> dict:
    """Spawn ``name``'s server, time its steps, a kernel's answer and the stop."""
    seen: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    began_epoch = time.time()
    began = time.perf_counter()
    watcher = None
    if vm_folder is not None:
        earlier = set(vm_folder.glob("vm-*/console.log"))
        watcher = asyncio.create_task(watch_console(vm_folder, earlier, began, seen))
    try:
        outcome = await client.spawn(name, {"profile": PROFILE["name"]}, timeout=timeout)
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    run = {"user": name, "load_1min_before": round(load_before, 2), "ok": outcome.ok,
           "error": outcome.error, "steps": steps_of(outcome.events), "console": seen}
    callback = hub_callback_at(hub.handle.log_text(), name, began_epoch)
    if callback is not None:
        run["server_calls_hub_s"] = callback
    if not outcome.ok:
        with contextlib.suppress(Exception):
            await client.stop(name)
        return run
    run["ready_s"] = outcome.seconds
    kernel_began = time.perf_counter()
    try:
        kernel = await client.start_kernel(name)
        output = await client.execute(name, kernel, CELL, timeout=300)
        if output.strip() != CELL_OUTPUT:
            raise RuntimeError(f"the kernel printed {output!r}, not {CELL_OUTPUT}")
        run["kernel_s"] = outcome.seconds + time.perf_counter() - kernel_began
    except Exception as error:  # counted as this start's failure, the next start goes on
        run["ok"], run["error"] = False, f"kernel: {type(error).__name__}: {error}"
    run["load_1min_after"] = round(os.getloadavg()[0], 2)
    try:
        run["stop_s"] = await client.stop(name, timeout=180)
    except Exception as error:
        run["stop_error"] = str(error)
    return run


def milestones(run: dict) -> list[tuple[str, float]]:
    """Every timed point of one start, in time order."""
    points = [(step_label(message), at) for message, at in run["steps"]]
    points += [(f"console: {label}", at) for label, at in run["console"].items()]
    if "server_calls_hub_s" in run:
        points.append(("server calls the hub's API", run["server_calls_hub_s"]))
    for key, label in (("ready_s", "/api/status answers 200"),
                       ("kernel_s", "kernel prints 42")):
        if key in run:
            points.append((label, run[key]))
    return sorted(points, key=lambda point: point[1])


# ---- the generic image: the environment's container image run by podman in the VM -----------

PODMAN_PACKAGES = ("podman", "crun", "conmon", "containernetworking-plugins")
CONTAINERS_CONF = """\
# KioskHub's generic VM image: podman without systemd. The image's init mounts no cgroup file
# system and the VM holds one server, so containers run without cgroups of their own.
[containers]
cgroups = "disabled"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
"""
CGROUP_CFG = """\
# podman's runtime (crun) refuses to start a container without a cgroup file system on
# /sys/fs/cgroup, which the image's init leaves unmounted (systemd mounts it where it boots).
bootcmd:
  - [sh, -c, "mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup"]
"""


def podman_recipe():
    """The test image's recipe with podman added: what a site's generic image needs."""
    from dataclasses import dataclass

    from tests.openstack_sim.vm_image import default_recipe

    base = default_recipe()

    @dataclass(frozen=True)
    class PodmanRecipe(type(base)):
        def files(self) -> dict[str, tuple[int, str]]:
            return {**super().files(),
                    "/etc/containers/containers.conf": (0o644, CONTAINERS_CONF),
                    "/etc/cloud/cloud.cfg.d/91_kioskhub_cgroup.cfg": (0o644, CGROUP_CFG)}

    return PodmanRecipe(mirror=base.mirror,
                        debian_packages=base.debian_packages + PODMAN_PACKAGES)


# ---- the hubs ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def openstack_hub(generic: bool = False):
    """Keystone, the simulated cloud with qemu machines, and a KioskHub on it. ``generic``:
    the VM boots the generic image (``podman_recipe``), whose cloud-init pulls the default
    environment's container image (the site base image, pushed first to a registry on
    loopback, which the VM reaches at 10.0.2.2) and runs it with podman."""
    from tests.openstack_sim.machines import QemuMachines
    from tests.openstack_sim.server import OpenStackSimulation
    from tests.openstack_sim.vm_image import build_vm_image
    from tests.support.keystone import start_keystone

    recipe = podman_recipe() if generic else None
    image = await asyncio.to_thread(build_vm_image, IMAGE_CACHE, recipe, report.progress)
    folder = open_folder("vmstart-cloud")
    registry = None
    site: dict = {"images": [{"environment": "default", "image": "kioskhub-vm"}]}
    pods: dict = {}
    if generic:
        registry, reference = await asyncio.to_thread(push_base_image, folder / "registry")
        site = {"image": "kioskhub-vm"}
        pods = {"pods": {"image": reference,
                         "insecure_registries": [reference.split("/", 1)[0]]}}
    report.progress("starting Keystone")
    keystone = await asyncio.to_thread(start_keystone, folder / "keystone")
    hub = None
    kind = "openstack, generic image" if generic else "openstack"
    try:
        with OpenStackSimulation(keystone, QemuMachines(folder)) as cloud:
            cloud.add_flavor(*FLAVOR)
            cloud.add_image("kioskhub-vm", str(image))
            report.progress(f"starting KioskHub: {kind}")
            boot_timeout = boot_timeout_of(kind)
            hub = await asyncio.to_thread(
                start_kioskhub, "vmstart-openstack",
                spawner={"backend": "openstack", "start_timeout": boot_timeout + 60},
                profiles=[PROFILE],
                openstack={
                    **keystone.site_openstack(folder), **site,
                    "flavors": [{"profile": PROFILE["name"], "flavor": FLAVOR[0]}],
                    "boot_timeout": boot_timeout,
                },
                **pods,
            )
            try:
                yield hub, folder
            finally:
                report.progress(f"stopping the hub: {kind}")
                with contextlib.suppress(Exception):
                    hub.stop()
                hub.remove()
                cloud.delete_everything()
    finally:
        keystone.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(folder, ignore_errors=True)


def boot_timeout_of(kind: str) -> int:
    return GENERIC_BOOT_TIMEOUT if kind == "openstack, generic image" else BOOT_TIMEOUT


def push_base_image(folder: Path):
    """A registry on loopback holding the site base image; its reference as a VM sees it."""
    from kioskhub.spawner.pod_image import BaseImageRecipe
    from kioskhub.spawner.podman_cli import podman_command, podman_env
    from tests.support.registry import LoopbackRegistry

    registry = LoopbackRegistry(folder).start()
    image = BaseImageRecipe().image_ref
    tag = image.rsplit(":", 1)[1]
    report.progress(f"pushing {image} to the registry on loopback")
    pushed = subprocess.run(
        podman_command("push", "--tls-verify=false", image,
                       f"{registry.host}/kioskhub/base:{tag}"),
        env=podman_env(), capture_output=True, text=True, timeout=900)
    if pushed.returncode != 0:
        registry.stop()
        raise RuntimeError(f"podman push failed: {pushed.stderr[-1000:]}")
    return registry, f"{HOST_FROM_GUEST}:{registry.port}/kioskhub/base:{tag}"


@contextlib.asynccontextmanager
async def podman_hub():
    from .pods import remove_home_volumes

    report.progress("starting KioskHub: podman")
    hub = await asyncio.to_thread(start_kioskhub, "vmstart-podman",
                                  spawner={"backend": "podman"}, profiles=[PROFILE])
    try:
        yield hub, None
    finally:
        report.progress("stopping the hub: podman")
        with contextlib.suppress(Exception):
            hub.stop()
        remove_home_volumes(hub.folder / "state")
        hub.remove()


async def measure(starts: int, variants: tuple[str, ...]) -> dict:
    from .spawn_latency import create_users

    names = [f"vm-{i:03d}" for i in range(starts)]
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    async with contextlib.AsyncExitStack() as stack:
        hubs, clients, folders = {}, {}, {}
        for variant in variants:
            opened = (podman_hub() if variant == "podman"
                      else openstack_hub(generic=variant == "openstack, generic image"))
            hubs[variant], folders[variant] = await stack.enter_async_context(opened)
            clients[variant] = await admin_client(hubs[variant].url, ADMIN, ADMIN_PASSWORD)
            stack.push_async_callback(clients[variant].close)
            await create_users(clients[variant], names)
        for i, name in enumerate(names):
            order = variants if i % 2 == 0 else tuple(reversed(variants))
            for variant in order:
                report.progress(f"{variant} {i + 1}/{starts}: {name}")
                run = await start_once(clients[variant], hubs[variant], name, folders[variant],
                                       boot_timeout_of(variant) + 120)
                runs[variant].append(run)
                for label, at in milestones(run):
                    report.progress(f"  {at:7.1f} s  {label}")
                if not run["ok"]:
                    report.progress(f"  FAILED: {run['error']}")
    return {variant: summary(variant_runs) for variant, variant_runs in runs.items()}


def summary(runs: list[dict]) -> dict:
    good = [run for run in runs if run["ok"]]
    labels: dict[str, list[float]] = {}
    for run in good:
        for label, at in milestones(run):
            labels.setdefault(label, []).append(at)
    return {
        "ready_s": summarize([run["ready_s"] for run in good]),
        "kernel_s": summarize([run["kernel_s"] for run in good]),
        "stop_s": summarize([run["stop_s"] for run in good if "stop_s" in run]),
        "timeline_p50_s": sorted(((label, summarize(values)["p50"])
                                  for label, values in labels.items()), key=lambda x: x[1]),
        "failures": [f"{run['user']}: {run['error']}" for run in runs if not run["ok"]],
        "runs": runs,
    }


# ---- output -------------------------------------------------------------------------------------


def plot(results: dict, cond: dict) -> None:
    import matplotlib

    figure, axes = report.new_figure(2, width=6, height=6)
    rows = [(variant, i, run) for variant, r in results.items()
            for i, run in enumerate(r["runs"], start=1) if run["ok"]]
    left = axes[0]
    colours: dict[str, tuple] = {}
    palette = matplotlib.colormaps["tab20"].colors
    for y, (_, _, run) in enumerate(rows):
        previous = 0.0
        for label, at in milestones(run):
            colours.setdefault(label, palette[len(colours) % len(palette)])
            left.barh(y, at - previous, left=previous, color=colours[label], edgecolor="white",
                      linewidth=0.5, label=label)
            previous = at
    left.set_yticks(range(len(rows)), [f"{variant} #{i}" for variant, i, _ in rows])
    left.invert_yaxis()
    left.set_xlabel("seconds from the spawn request")
    left.set_title("Start timeline through the hub")
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    left.legend(unique.values(), unique.keys(), fontsize=6, ncol=2, loc="upper center",
                bbox_to_anchor=(0.5, -0.14), title="each bar ends at", title_fontsize=6)
    right = axes[1]
    variants = list(results)
    width = 0.35
    for offset, (key, label) in enumerate((("ready_s", "server ready"),
                                           ("kernel_s", "kernel prints 42"))):
        values = [results[v][key].get("p50") or 0 for v in variants]
        right.bar([i + offset * width for i in range(len(variants))], values, width, label=label)
    accelerator = cond["parameters"].get("vm_accelerator")
    names = {"openstack": f"VM ({accelerator})", "podman": "pod",
             "openstack, generic image": f"VM, generic\nimage ({accelerator})"}
    right.set_xticks([i + width / 2 for i in range(len(variants))],
                     [names[v] for v in variants])
    right.set_ylabel("seconds from the spawn request (p50)")
    right.set_title("KioskHub: VM vs pod, request → ready → kernel")
    right.legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def print_tables(results: dict) -> None:
    rows = [[variant, r["ready_s"]["count"], r["ready_s"]["p50"], r["ready_s"]["max"],
             r["kernel_s"]["p50"], r["kernel_s"]["max"], r["stop_s"]["p50"], len(r["failures"])]
            for variant, r in results.items()]
    report.print_table(["backend", "runs", "ready p50 s", "ready max s", "kernel p50 s",
                        "kernel max s", "stop p50 s", "fail"], rows,
                       title="VM start through KioskHub: spawn request → ready → kernel prints 42")
    for variant, r in results.items():
        print()
        previous = 0.0
        rows = []
        for label, at in r["timeline_p50_s"]:
            rows.append([label, at, at - previous])
            previous = at
        report.print_table(["step", "at p50 s", "since the step before s"], rows,
                           title=f"{variant}: timeline (p50 of each step over the runs)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--starts", "-n", type=int, default=2, help="starts per variant (2)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:2]),
                   help="what to start (openstack and podman; the generic image's start "
                   "pulls 0.9 GB into an emulated VM: over 15 minutes here)")
    p.add_argument("--plot-only", action="store_true",
                   help="draw results/vm_start.png again from results/vm_start.json")
    args = p.parse_args(argv)
    if args.plot_only:
        stored = json.loads((report.RESULTS / f"{NAME}.json").read_text())
        plot(stored["results"], stored["conditions"])
        return 0
    from tests.openstack_sim.qemu import accelerator

    checks = {"openstack": openstack_missing, "podman": podman_missing,
              "openstack, generic image": generic_missing}
    reasons = {variant: why for variant in args.variants if (why := checks[variant]())}
    variants = tuple(variant for variant in args.variants if variant not in reasons)
    vm_accelerator = (accelerator() if any(v.startswith("openstack") for v in variants)
                      else None)
    cond = report.conditions(
        starts=args.starts, C=1, variants=list(variants), not_measured=reasons,
        vm_accelerator=vm_accelerator,
        software_emulation=vm_accelerator == "tcg" if vm_accelerator else None,
        kvm_device=Path("/dev/kvm").exists(), vm_flavor=dict(zip(
            ("name", "vcpus", "memory_mb", "disk_gb"), FLAVOR, strict=True)),
        profile=PROFILE)
    for variant, why in reasons.items():
        print(f"VM start: {variant} not measured: {why}", flush=True)
    if not variants:
        report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": False,
                                 "reasons": reasons})
        return 0
    print(report.conditions_line(cond), flush=True)
    results = asyncio.run(measure(args.starts, variants))
    cond["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print(report.conditions_line(cond))
    print(f"VM accelerator: {vm_accelerator}; load average at the end: "
          f"{cond['load_average_at_end']}")
    print_tables(results)
    factor = ratio(results.get("openstack", {}).get("kernel_s", {}).get("p50"),
                   results.get("podman", {}).get("kernel_s", {}).get("p50"))
    if factor is not None:
        print(f"a VM takes ×{factor:.1f} the time of a pod to a kernel's answer (p50)")
    report.write_json(NAME, {"benchmark": NAME, "conditions": cond, "measured": True,
                             "results": results, "vm_over_pod_kernel_p50": factor})
    plot(results, cond)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
