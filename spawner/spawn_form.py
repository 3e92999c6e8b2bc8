"""The spawn form: environment and profile pickers as plain HTML (works without JavaScript)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from kioskhub.hub.schema.choices import Environment, ResourceProfile

FORM_STYLE = """
<style>
  .kh-choices { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr));
                gap: .75rem; margin: .25rem 0 1.25rem; }
  .kh-choice { display: block; border: 1px solid #ccd; border-radius: .5rem; padding: .75rem 1rem;
               cursor: pointer; background: #fff; }
  .kh-choice:has(input:checked) { border-color: #f37524; box-shadow: 0 0 0 2px #f3752455; }
  .kh-choice input { margin-right: .4rem; }
  .kh-choice .kh-title { font-weight: 600; }
  .kh-choice .kh-desc { color: #555; margin: .35rem 0 .2rem; font-size: .92em; }
  .kh-choice .kh-res { color: #333; font-size: .85em; font-family: monospace; }
  .kh-choice.kh-unavailable { cursor: not-allowed; background: #f4f4f6; color: #777; }
  .kh-choice .kh-why { color: #8a4b00; margin-top: .35rem; font-size: .88em; }
  .kh-badge { display: inline-block; background: #6a1b9a; color: #fff; border-radius: .3rem;
              padding: 0 .4rem; font-size: .75em; margin-left: .35rem; vertical-align: middle; }
  .kh-legend { font-size: 1.1em; font-weight: 600; margin-top: .5rem; }
</style>
"""


def format_bytes(size: int) -> str:
    """2000000000 → '2 GB', 536870912 → '512 MiB' (whichever is exact, else GB with one digit)."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("GB", 10**9), ("MB", 10**6)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size / 10**9:.1f} GB"


def describe_resources(profile: ResourceProfile) -> str:
    parts = [f"{profile.cpu:g} CPU", f"{format_bytes(profile.memory)} memory"]
    if profile.gpu.count:
        parts.append(f"{profile.gpu.count} × {profile.gpu.type or 'any'} GPU")
    return " · ".join(parts)


def _card(
    field: str, choice, selected: str | None, details: str, badge: str = "", why_not: str = ""
) -> str:
    """One choice; with ``why_not``, shown but not choosable, and the reason under it."""
    checked = " checked" if choice.name == selected and not why_not else ""
    disabled = " disabled" if why_not else ""
    badge_html = f'<span class="kh-badge">{escape(badge)}</span>' if badge else ""
    why_html = f'<div class="kh-why">{escape(why_not)}</div>' if why_not else ""
    classes = "kh-choice kh-unavailable" if why_not else "kh-choice"
    return (
        f'<label class="{classes}" id="kh-{field}-{escape(choice.name)}">'
        f'<input type="radio" name="{field}" value="{escape(choice.name)}"{checked}{disabled}>'
        f'<span class="kh-title">{escape(choice.title)}</span>{badge_html}'
        f'<div class="kh-desc">{escape(choice.description)}</div>'
        f'<div class="kh-res">{escape(details)}</div>{why_html}'
        "</label>"
    )


def _default(choices: Sequence) -> str | None:
    if not choices:
        return None
    return next((c.name for c in choices if c.default), choices[0].name)


def render_spawn_form(
    environments: Sequence[Environment],
    profiles: Sequence[ResourceProfile],
    selected: dict[str, str] | None = None,
    refused: Mapping[str, str] | None = None,
) -> str:
    """The form's HTML for the choices a user may make (already filtered by their groups).

    ``refused`` maps the names of environments that the backend cannot run to the reason;
    they are shown, cannot be chosen, and are never preselected.
    """
    selected = selected or {}
    refused = refused or {}
    runnable = [e for e in environments if e.name not in refused]
    env_selected = selected.get("environment")
    if env_selected not in {e.name for e in runnable}:
        env_selected = _default(runnable)
    profile_selected = selected.get("profile") or _default(profiles)
    env_cards = "".join(
        _card("environment", e, env_selected, e.image or e.kind, why_not=refused.get(e.name, ""))
        for e in environments
    )
    profile_cards = "".join(
        _card(
            "profile",
            p,
            profile_selected,
            describe_resources(p),
            badge="GPU" if p.gpu.count else "",
        )
        for p in profiles
    )
    return (
        FORM_STYLE
        + '<div class="kh-legend">Environment</div>'
        + f'<div class="kh-choices" id="kh-environments">{env_cards}</div>'
        + '<div class="kh-legend">Resources</div>'
        + f'<div class="kh-choices" id="kh-profiles">{profile_cards}</div>'
    )


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """Form fields (or launch-link query arguments) → user_options."""
    return {
        key: values[0]
        for key in ("environment", "profile")
        if (values := formdata.get(key)) and values[0]
    }
