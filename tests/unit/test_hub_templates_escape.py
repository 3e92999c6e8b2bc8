"""KioskHub's hub templates escape what users control, rendered as JupyterHub renders them.

The home page shows each running server's choice summary (an environment's display name,
which a user writes when registering a repository) and the spawner's isolation warning; the
usage page shows user, group and profile names in its tables and charts; the join page an
event's title and a participant's display name. A
display name with markup must arrive as text, never as a tag.
"""

from __future__ import annotations

import os
from datetime import date
from types import SimpleNamespace

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub._data import DATA_FILES_PATH

from kioskhub.hub.jupyterhub_settings import TEMPLATES
from kioskhub.hub.schema.site import Site
from kioskhub.hub.usage_pages import usage_charts
from kioskhub.hub.usage_report import BY, Period, total_row, usage_rows
from kioskhub.hub.usage_slices import UsageSlice

HOSTILE = '<img src=x onerror="alert(1)">'


def hub_templates() -> Environment:
    """The loader and options of JupyterHub's own app (templates/ is JupyterHub's)."""
    jupyterhub_templates = os.path.join(DATA_FILES_PATH, "templates")
    return Environment(
        loader=ChoiceLoader(
            [
                PrefixLoader({"templates": FileSystemLoader([jupyterhub_templates])}, "/"),
                FileSystemLoader([str(TEMPLATES), jupyterhub_templates]),
            ]
        ),
        autoescape=True,
    )


def a_user_running(summary: str, warning: str) -> SimpleNamespace:
    spawner = SimpleNamespace(
        name=HOSTILE,
        active=True,
        ready=True,
        pending=None,
        url="/user/ada/",
        choice_summary=summary,
        isolation_warning=warning,
    )
    return SimpleNamespace(
        name="ada",
        admin=False,
        running=True,
        active=True,
        url="/user/ada/",
        spawner=spawner,
        spawners={"": spawner},
    )


def usage_report_of(name: str) -> dict:
    """What the usage page gets: a user, group, profile and month all named ``name``."""
    part = UsageSlice(name, name, name, name, "server", 1, 3600.0, 3600.0, 0.0, 3600.0, 0)
    tables = {by: usage_rows([part], by) for by in BY}
    return {
        "period": Period(date(2026, 12, 1), date(2027, 1, 1)),
        "tables": tables,
        "total": total_row([part]),
        "charts": usage_charts(tables),
    }


def workshop_pages_of(name: str) -> dict:
    """What the Workshops pages get: an event, a participant and a form all named ``name``."""
    site = Site(workshops={"enabled": True})
    event = {
        "event_id": "abc234", "title": name, "teacher": name, "environment": name,
        "profile": name, "materials_repo": name, "materials_ref": name, "seats": 3,
        "start": name, "end": name, "code": name, "join_url": name, "group": name,
    }  # fmt: skip
    row = {"username": name, "display_name": name, "server": name, "last_activity": name}
    return {
        "events": [event],
        "site_environments": site.environments,
        "site_profiles": site.profiles,
        "settings": site.workshops,
        "fields": {"title": name, "materials_repo": name, "seats": name},
        "problems": {name: name},
        "event": event,
        "rows": [row],
        "warm": {"seats": 2, "running": 1},
        "closes": name,
        "done": name,
        "outcomes": {name: name},
        "problem": name,
        "collections": [{"name": name, "bytes": 1, "created": name}],
        "xsrf": "x",
    }


# page.html only adds a link for admins to every page's navigation bar (tested below).
PAGES = sorted(p.name for p in TEMPLATES.glob("*.html") if p.name != "page.html")


@pytest.mark.parametrize("name", PAGES)
def test_hostile_strings_are_escaped(name):
    html = (
        hub_templates()
        .get_template(name)
        .render(
            user=a_user_running(HOSTILE, HOSTILE),
            static_url=lambda *args, **kwargs: "",
            base_url="/hub/",
            prefix="/hub/",
            default_server=None,
            named_spawners=[],
            parsed_scopes=set(),
            status_code=400,
            status_message=HOSTILE,
            message=HOSTILE,
            **usage_report_of(HOSTILE),
            filter_user=HOSTILE,
            entries=[{"when": "", "actor": HOSTILE, "actor_kind": HOSTILE, "detail": HOSTILE}],
            overrides={HOSTILE: {"limits": {"x": HOSTILE}, "reason": HOSTILE}},
            opens=HOSTILE,
            seat=SimpleNamespace(display_name=HOSTILE),
            username=HOSTILE,
            login_error=HOSTILE,
            authenticator=SimpleNamespace(request_otp=False),
            kh_workshop_join=True,
            **workshop_pages_of(HOSTILE)
            | seat_page_of(HOSTILE, name),
        )
    )

    assert HOSTILE not in html
    assert html.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") >= 2, html


def seat_page_of(name: str, template: str) -> dict:
    """The gallery seat page's values: its ticket (its refusal, ``problem``, is shown alone
    and tested in ``test_gallery_templates_escape``)."""
    ticket = SimpleNamespace(title=name, number=1, environment=name, profile=name)
    values = {"ticket": ticket, "hours": 24, "lab_account": ""}
    return values | ({"problem": ""} if template == "gallery_seat.html" else {})


def test_a_refused_sign_in_shows_its_reason_escaped():
    html = (
        hub_templates()
        .get_template("error.html")
        .render(
            static_url=lambda *args, **kwargs: "",
            base_url="/hub/",
            status_code=403,
            status_message="Sign-in refused",
            message=f"the username {HOSTILE} is reserved",
        )
    )

    assert "You could not be signed in" in html
    assert HOSTILE not in html
    assert "the username &lt;img src=x onerror=&#34;alert(1)&#34;&gt; is reserved" in html
    assert 'href="/hub/logout"' in html


def test_the_navigation_bar_links_to_the_usage_report_for_admins_only():
    page = hub_templates().get_template("page.html")
    common = dict(user=a_user_running("", ""), static_url=lambda *a, **k: "", base_url="/hub/")
    admin = page.render(parsed_scopes={"admin:users", "admin-ui"}, **common)
    user = page.render(parsed_scopes={"self"}, **common)
    assert '<a class="nav-link" href="/hub/usage" id="kh-nav-usage">Usage</a>' in admin
    assert 'href="/hub/admin"' in admin, "JupyterHub's own links are kept"
    assert "kh-nav-usage" not in user


@pytest.mark.parametrize(
    "page",
    [
        {"refusal": SimpleNamespace(reason=HOSTILE, message=HOSTILE)},
        {"event": SimpleNamespace(title=HOSTILE), "problem": HOSTILE, "display_name": HOSTILE},
        {"event": SimpleNamespace(title=HOSTILE), "lab_account": HOSTILE, "ends": HOSTILE},
    ],
    ids=["refused", "display-name-form", "lab-account"],
)
def test_the_join_page_shows_titles_names_and_refusals_escaped(page):
    html = (
        hub_templates()
        .get_template("join.html")
        .render(static_url=lambda *args, **kwargs: "", base_url="/hub/", **page)
    )

    assert HOSTILE not in html
    assert html.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") >= 2, html


def test_the_login_page_links_to_joining_a_workshop_when_workshops_are_on():
    login = hub_templates().get_template("login.html")
    common = dict(static_url=lambda *a, **k: "", base_url="/hub/", authenticator=None)
    link = '<a href="/hub/join">Join a workshop with a code</a>'

    assert link in login.render(kh_workshop_join=True, **common)
    assert link not in login.render(**common)
def test_the_navigation_bar_links_to_workshops_for_teachers_only():
    page = hub_templates().get_template("page.html")
    common = dict(user=a_user_running("", ""), static_url=lambda *a, **k: "", base_url="/hub/")
    teacher = page.render(parsed_scopes={"self"}, kh_workshop_teacher=True, **common)
    user = page.render(parsed_scopes={"self"}, kh_workshop_teacher=False, **common)
    assert 'href="/hub/workshops" id="kh-nav-workshops">Workshops</a>' in teacher
    assert "kh-nav-workshops" not in user
