"""What the environments service gets for the GitLab CI path, from the ``gitlab:`` section."""

from __future__ import annotations

import logging

from kioskhub.hub.schema.gitlab import CI_TEMPLATE, GitLabSettings
from kioskhub.image_builder.gitlab_builder import GitLabCIBuilder
from kioskhub.image_builder.gitlab_service import gitlab_builders, gitlab_routes, public_webhook_url
from kioskhub.image_builder.gitlab_webhook import GitLabWebhookHandler, PipelineEventBus

SECRET = "0123456789abcdef01234567"
CATALOG = object()  # stored by the builder, not used until a build runs


def test_without_a_gitlab_url_nothing_is_built_or_mounted():
    settings = GitLabSettings()

    assert gitlab_builders(settings, CATALOG, PipelineEventBus(), {}) == {}
    assert gitlab_routes("/services/environments/", settings, PipelineEventBus()) == []


def test_without_the_token_the_builder_is_off_and_says_why(caplog):
    settings = GitLabSettings(url="https://gitlab.example.org", api_token_env="LAB_GITLAB_TOKEN")

    with caplog.at_level(logging.WARNING):
        assert gitlab_builders(settings, CATALOG, PipelineEventBus(), {}) == {}

    assert "set $LAB_GITLAB_TOKEN" in caplog.text


def test_with_url_and_token_the_service_gets_the_gitlab_ci_builder():
    events = PipelineEventBus()
    settings = GitLabSettings(
        url="https://gitlab.example.org",
        allowed_namespaces=["lab"],
        trigger="trigger-token",
    )

    builders = gitlab_builders(settings, CATALOG, events, {"KIOSKHUB_GITLAB_TOKEN": "glpat-x"})

    builder = builders["gitlab-ci"]
    assert isinstance(builder, GitLabCIBuilder) and builder.kind == "gitlab-ci"
    assert builder.require_trigger_token
    assert builder.builds.allowed_namespaces == ("lab",)
    assert builder.builds.events is events
    assert builder.builds.connection.url == "https://gitlab.example.org"
    assert builder.memory.catalog is CATALOG


def test_the_routes_mount_the_webhook_and_the_template_below_the_prefix():
    events = PipelineEventBus()
    settings = GitLabSettings(url="https://gitlab.example.org", webhook_secret=SECRET)

    (hook_path, hook_handler, hook_args), (template_path, _, template_args) = gitlab_routes(
        "/services/environments", settings, events
    )

    assert hook_path == "/services/environments/webhooks/gitlab"
    assert hook_handler is GitLabWebhookHandler
    assert hook_args == {"secret": SECRET, "events": events, "body_limit": 1024 * 1024}
    assert template_path == "/services/environments/ci/kioskhub-env.gitlab-ci.yml"
    assert template_args == {"template": str(CI_TEMPLATE)}


def test_the_builder_adds_the_public_webhook_when_a_secret_is_set():
    settings = GitLabSettings(url="https://gitlab.example.org", webhook_secret=SECRET)
    url = public_webhook_url("https://hub.example.org/", "/services/environments")
    environ = {"KIOSKHUB_GITLAB_TOKEN": "glpat-x"}

    with_secret = gitlab_builders(settings, CATALOG, PipelineEventBus(), environ, webhook_url=url)
    without = gitlab_builders(
        GitLabSettings(url="https://gitlab.example.org"),
        CATALOG,
        PipelineEventBus(),
        environ,
        webhook_url=url,
    )

    assert url == "https://hub.example.org/services/environments/webhooks/gitlab"
    assert with_secret["gitlab-ci"].webhook == (url, SECRET)
    assert without["gitlab-ci"].webhook is None


def test_the_environments_service_serves_the_gitlab_webhook_and_builder(tmp_path, monkeypatch):
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    from kioskhub.hub.schema.config_file import load_site
    from kioskhub.image_builder.service import make_app, start_catalog

    config = tmp_path / "kioskhub.yaml"
    config.write_text(
        "builder: {enabled: true}\n"
        f"gitlab: {{url: 'https://gitlab.example.org', webhook_secret: '{SECRET}'}}\n"
    )
    monkeypatch.setenv("KIOSKHUB_GITLAB_TOKEN", "glpat-x")
    site = load_site(config)
    events = PipelineEventBus()
    catalog, runner = start_catalog(site, events=events)
    try:
        assert "gitlab-ci" in runner.builders
        app = make_app(site, catalog, runner, "/services/environments/", events)
        start = RequestStartLine("POST", "/services/environments/webhooks/gitlab", "HTTP/1.1")
        request = HTTPServerRequest(start_line=start, headers=HTTPHeaders({"Host": "127.0.0.1"}))
        assert app.find_handler(request).handler_class is GitLabWebhookHandler
    finally:
        catalog.close()
