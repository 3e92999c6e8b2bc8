"""Journey J1 in a real browser: sign in on the form, land in JupyterLab, run the example."""

from __future__ import annotations

import pytest

from tests.conftest import SHARED_PASSWORD

pytestmark = pytest.mark.browser

NOTEBOOK = "examples/getting-started.ipynb"
USERNAME = "chromium-ada"
"""A name of its own: servers' cgroups are named after their user, on the whole machine."""


def sign_in(browser, hub_url: str, username: str, password: str) -> None:
    """Open the hub, expect the login form, and submit it."""
    browser.get(hub_url)
    browser.wait_for_url(lambda url: "/hub/login" in url, 60, "the login page")
    field = browser.wait_for("#username_input", 60)
    field.clear()
    field.send_keys(username)
    browser.wait_for("#password_input").send_keys(password)
    browser.wait_for("#login_submit").click()


def lab_or_spawn_form(browser, lab_prefix: str):
    """Wait until the browser is in JupyterLab or on the hub's spawn form; say which."""

    def where(driver):
        if driver.current_url.startswith(lab_prefix):
            return "lab"
        fail_on_spawn_error(browser)
        forms = [f for f in browser.css("form#spawn_form") if f.is_displayed()]
        return "form" if forms else False

    return browser.wait_until(where, 120, "neither JupyterLab nor the spawn form came up")


def fail_on_spawn_error(browser) -> None:
    """Stop waiting at once when the hub reports that the server failed to start."""
    if "/hub/spawn" in browser.url:
        text = browser.page_text()
        if "Error: " in text or "Spawn failed" in text:
            raise AssertionError(f"the server did not start; the hub says:\n{text}")


def reach_lab(browser, lab_prefix: str) -> None:
    def in_lab(driver):
        fail_on_spawn_error(browser)
        return driver.current_url.startswith(lab_prefix)

    browser.wait_until(in_lab, 120, f"the browser never reached {lab_prefix}")


def start_from_the_spawn_form(browser) -> None:
    """Start the server with the form's preselected environment and resources."""
    form = browser.wait_for("form#spawn_form")
    radios = form.find_elements("css selector", "input[type=radio]")
    groups = {radio.get_attribute("name") for radio in radios}
    checked = {radio.get_attribute("name") for radio in radios if radio.is_selected()}
    assert checked == groups, f"the spawn form preselects nothing for {groups - checked}"
    form.find_element("css selector", "button[type=submit]").click()


def choose_python_kernel_if_asked(browser) -> bool:
    """Answer JupyterLab's "Select Kernel" dialog, if it shows one, with Python 3.

    Return whether a dialog was answered.
    """
    for dialog in browser.css(".jp-Dialog"):
        if not dialog.is_displayed() or "Select Kernel" not in dialog.text:
            continue
        for option in dialog.find_elements("css selector", "select option"):
            if "Python 3" in option.text:
                option.click()
                break
        for button in dialog.find_elements("css selector", "button"):
            if button.text.strip() == "Select":
                button.click()
                return True
    return False


def kernel_is_ready(browser) -> bool:
    """True once the notebook's Python 3 kernel has started and is idle.

    The toolbar's execution indicator says "idle" before any kernel exists, so this reads
    the status bar's kernel item ("Python 3 (ipykernel) | Idle") instead.
    """
    choose_python_kernel_if_asked(browser)
    for item in browser.css(".jp-StatusBar-TextItem[title^='Change kernel']"):
        text = item.text.strip()
        if text.startswith("Python 3") and text.endswith("| Idle"):
            return True
    return False


def run_all_cells(browser, attempts: int = 3):
    """Run > Run All Cells; return the output that says KioskHub is ready.

    If JupyterLab asks for a kernel on the way (it then clears the run instead of queueing
    it), answer with Python 3 and run all cells again.
    """

    def outcome(_driver):
        if choose_python_kernel_if_asked(browser):
            return "asked for a kernel"
        for output in browser.css(".jp-OutputArea-output"):
            if "KioskHub is ready" in output.text:
                return output
        return False

    for _ in range(attempts):
        browser.wait_until(lambda _: kernel_is_ready(browser), 120, "the kernel never became idle")
        browser.click_text(".lm-MenuBar-itemLabel", "Run", 30)
        browser.click_text(".lm-Menu-itemLabel", "Run All Cells", 30)
        result = browser.wait_until(outcome, 120, "no output says 'KioskHub is ready'")
        if result != "asked for a kernel":
            return result
    raise AssertionError(f"JupyterLab asked for a kernel {attempts} times")


def test_sign_in_and_run_the_getting_started_notebook(running_hub, browser):
    sign_in(browser, running_hub.url, USERNAME, SHARED_PASSWORD)

    lab_prefix = f"{running_hub.url}/user/{USERNAME}/lab"
    if lab_or_spawn_form(browser, lab_prefix) == "form":
        start_from_the_spawn_form(browser)
    reach_lab(browser, lab_prefix)
    browser.wait_for("#jp-main-dock-panel", 120)

    browser.get(f"{lab_prefix}/tree/{NOTEBOOK}")
    browser.wait_for("#jp-main-dock-panel", 120)
    browser.wait_for_text(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", "getting-started.ipynb")
    browser.wait_for(".jp-NotebookPanel .jp-Notebook .jp-Cell", 120)

    ready = run_all_cells(browser)
    assert "KioskHub is ready" in ready.text
    assert "rows read from" in ready.text

    plot = browser.wait_for(".jp-OutputArea-output img, .jp-RenderedImage img", 120)
    assert plot.get_attribute("src").startswith("data:image/png")
    slider = browser.wait_for(".jupyter-widgets .widget-slider, .widget-slider", 120)
    assert slider.is_displayed()
    assert "Smoothing" in browser.wait_for(".jupyter-widgets").text
    stderr = browser.css(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    errors = [output.text for output in stderr if "Error" in output.text]
    assert not errors, f"cells failed: {errors}"


def test_bad_username_shows_a_clear_message(running_hub, browser):
    sign_in(browser, running_hub.url, "bad/name", SHARED_PASSWORD)

    browser.wait_until(
        lambda driver: "Invalid username" in browser.page_text(),
        60,
        "the page never said 'Invalid username'",
    )
    text = browser.page_text()
    assert "Invalid username" in text
    assert "lowercase letters, digits" in text
    assert "/user/" not in browser.url
