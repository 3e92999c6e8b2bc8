"""The README's prerequisites name exactly the Debian packages that the suite installs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def script_packages() -> list[str]:
    script = (REPO / "tests" / "require-system-packages").read_text()
    listed = re.search(r"^packages=\((.*?)\)$", script, re.MULTILINE | re.DOTALL)
    assert listed, "tests/require-system-packages has no packages=(...) list"
    return listed.group(1).split()


def readme_packages() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)\n\s*```", section, re.DOTALL)
    assert block, "the README's Prerequisites section has no block listing the packages"
    return block.group(1).split()


def test_readme_names_the_packages_that_the_suite_installs():
    assert readme_packages() == script_packages()
    assert {"slirp4netns", "catatonit", "chromium-driver"} <= set(script_packages())
