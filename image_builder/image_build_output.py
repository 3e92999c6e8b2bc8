"""What a failed ``podman build`` tells the user: the file, the line and the last words. Pure.

podman prints ``STEP n/N: ...`` before each step and ``Error: building at STEP ...: exit
status X`` when one fails; the recipe knows which file each step comes from. An apt step that
names a package Debian does not have says so by the line of ``apt.txt`` that lists it.
"""

from __future__ import annotations

import re

from .container_spec import ContainerSpec
from .image_recipe import ImageRecipe

STEP_LINE = re.compile(r"^STEP (\d+)/(\d+): ")
EXIT_STATUS = re.compile(r"exit status (\d+)")
UNKNOWN_APT = re.compile(r"^E: (?:Unable to locate package |Package '?)([a-z0-9][a-z0-9+.-]*)")
PODMAN_NOISE = re.compile(r"^(time=\"|Error: building at STEP|--> |Trying to pull|Getting image)")
TAIL_LINES = 4
MAX_TAIL_CHARS = 200


def failing_step(lines: list[str]) -> tuple[int, list[str]]:
    """The number of the last step podman started, and the lines it printed."""
    number, start = 0, 0
    for index, line in enumerate(lines):
        match = STEP_LINE.match(line)
        if match:
            number, start = int(match.group(1)), index + 1
    return number, lines[start:]


def last_lines(lines: list[str]) -> str:
    kept = [line for line in lines if line.strip() and not PODMAN_NOISE.match(line)]
    return " / ".join(line.strip()[:MAX_TAIL_CHARS] for line in kept[-TAIL_LINES:])


def failure_message(
    output: str, recipe: ImageRecipe | None, spec: ContainerSpec, status: int
) -> str:
    """One message for a failed build, naming the file (and line) where the recipe knows it."""
    lines = output.splitlines()
    number, step_lines = failing_step(lines)
    exit_status = next(
        (m.group(1) for line in reversed(lines) if (m := EXIT_STATUS.search(line))), str(status)
    )
    if recipe is None:
        return (
            f"{spec.prefix}Dockerfile failed at step {number} (exit {exit_status}) — last "
            f"lines: {last_lines(step_lines)}"
        )
    label = recipe.label_of_step(number)
    if label.endswith("apt.txt"):
        lines_of = {package.name: package.line for package in spec.apt_packages}
        unknown = [m.group(1) for line in step_lines if (m := UNKNOWN_APT.match(line))]
        known = [name for name in unknown if name in lines_of]
        if known:
            return (
                "; ".join(
                    f"{label} line {lines_of[name]}: Debian has no package '{name}'"
                    for name in dict.fromkeys(known)
                )
                + " (check the name at packages.debian.org, suite bookworm)"
            )
    if label:
        return f"{label} failed (exit {exit_status}) — last lines: {last_lines(step_lines)}"
    return f"the image build failed (exit {exit_status}) — last lines: {last_lines(step_lines)}"
