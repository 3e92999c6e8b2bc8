"""What the builder may fetch: hostile URLs, refs and subfolders are refused, good ones pass."""

from __future__ import annotations

import pytest

from kioskhub.image_builder.source_safety import (
    RepositorySource,
    UnsafeSource,
    check_ref,
    check_repository_url,
    check_subdir,
    git_argv,
    git_environment,
    host_allowed,
)

RULES = {
    "allowed_schemes": ("https", "ssh"),
    "allowed_hosts": ("gitlab.example.org", "*.lab.example.org", "github.com"),
}

HOSTILE_URLS = [
    ("--upload-pack=touch /tmp/pwned", "command-line option"),
    ("-u touch /tmp/x", "command-line option"),
    ("ext::sh -c touch% /tmp/pwned", "spaces or control"),
    ("ext::sh", "transport helpers"),
    ("fd::17", "transport helpers"),
    ("file:///etc", "file:// URLs are not allowed"),
    ("file:///root/.ssh", "file:// URLs are not allowed"),
    ("http://169.254.169.254/latest/meta-data", "scheme 'http' is not allowed"),
    ("https://169.254.169.254/latest/meta-data", "not allowed; name the host"),
    ("https://[::1]/repo.git", "not allowed; name the host"),
    ("https://2852039166/repo.git", "not allowed; name the host"),
    ("https://0xa9fea9fe/repo.git", "not allowed; name the host"),
    ("ssh://-oProxyCommand=touch%20/tmp/pwned/x", "not allowed; name the host"),
    ("ssh://git@-oProxyCommand=sh/x", "not allowed; name the host"),
    ("git@gitlab.example.org:group/project.git", "scp-style"),
    ("https://evil.example.com/group/project.git", "host 'evil.example.com' is not allowed"),
    ("https://gitlab.example.org.evil.com/x.git", "is not allowed"),
    ("https://lab.example.org/x.git", "is not allowed"),
    ("https://user:secret@gitlab.example.org/x.git", "passwords or tokens"),
    ("https://oauth2@gitlab.example.org/x.git", "passwords or tokens"),
    ("https://gitlab.example.org/", "needs a path"),
    ("https://gitlab.example.org/a/../../etc", "needs a path"),
    ("https://gitlab.example.org/-x/y.git", "may not start with '-'"),
    ("https://gitlab.example.org/x.git?upload-pack=sh", "query"),
    ("https://gitlab.example.org/x.git\n--upload-pack=sh", "spaces or control"),
    ("git://gitlab.example.org/x.git", "scheme 'git' is not allowed"),
    ("/srv/repos/analysis", "local paths are not allowed"),
    ("relative/path", "not a URL"),
    ("", "give a repository URL"),
    ("https://" + "a" * 2050 + ".org/x.git", "longer than"),
]


@pytest.mark.parametrize("url, reason", HOSTILE_URLS)
def test_hostile_repository_urls_are_refused(url, reason):
    with pytest.raises(UnsafeSource, match=reason.replace("(", r"\(").replace("?", r"\?")):
        check_repository_url(url, **RULES)


GOOD_URLS = [
    (
        "https://gitlab.example.org/group/project.git",
        RepositorySource(
            "https://gitlab.example.org/group/project.git",
            "https://gitlab.example.org/group/project.git",
            "https",
        ),
    ),
    (
        "https://git.lab.example.org:8443/a/b",
        RepositorySource(
            "https://git.lab.example.org:8443/a/b", "https://git.lab.example.org:8443/a/b", "https"
        ),
    ),
    (
        "ssh://git@gitlab.example.org/group/project.git",
        RepositorySource(
            "ssh://git@gitlab.example.org/group/project.git",
            "ssh://git@gitlab.example.org/group/project.git",
            "ssh",
        ),
    ),
]


@pytest.mark.parametrize("url, expected", GOOD_URLS)
def test_allowed_repository_urls_pass(url, expected):
    assert check_repository_url(url, **RULES) == expected


def test_local_paths_only_when_the_site_allows_them():
    with pytest.raises(UnsafeSource, match="local paths are not allowed"):
        check_repository_url("/srv/repos/a", **RULES)
    assert check_repository_url("/srv/repos/a/", **RULES, allow_local_paths=True) == (
        RepositorySource("/srv/repos/a", "file:///srv/repos/a", "file", "/srv/repos/a")
    )
    for bad in ("/srv/../etc", "/"):
        with pytest.raises(UnsafeSource):
            check_repository_url(bad, **RULES, allow_local_paths=True)
    with pytest.raises(UnsafeSource, match="absolute path instead"):
        check_repository_url("file:///srv/repos/a", **RULES, allow_local_paths=True)


HOSTILE_REFS = [
    "-x",
    "--upload-pack=sh",
    "a..b",
    "a b",
    ";rm -rf /",
    "$(id)",
    "`id`",
    "main;id",
    "a|b",
    "feature/.hidden",
    "a//b",
    "/main",
    "main/",
    "main.",
    "main.lock",
    "refs/heads/x.lock/y",
    "HEAD@{1}",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "tab\there",
    "new\nline",
    "x" * 256,
]


@pytest.mark.parametrize("ref", HOSTILE_REFS)
def test_hostile_refs_are_refused(ref):
    with pytest.raises(UnsafeSource):
        check_ref(ref)


@pytest.mark.parametrize(
    "ref, expected",
    [
        (None, "HEAD"),
        ("", "HEAD"),
        ("HEAD", "HEAD"),
        ("main", "main"),
        ("v1.2.3", "v1.2.3"),
        ("feature/new-plot_2", "feature/new-plot_2"),
        ("a" * 40, "a" * 40),
        ("0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567"),
    ],
)
def test_good_refs_pass(ref, expected):
    assert check_ref(ref) == expected


@pytest.mark.parametrize("subdir", ["..", "a/../..", "/etc", "a/../../b", "-x", "a/-b", "a\x00"])
def test_hostile_subfolders_are_refused(subdir):
    with pytest.raises(UnsafeSource):
        check_subdir(subdir)


@pytest.mark.parametrize(
    "subdir, expected",
    [(None, ""), ("", ""), ("binder", "binder"), ("./a/b/", "a/b"), ("a//b", "a/b")],
)
def test_subfolders_are_normalised(subdir, expected):
    assert check_subdir(subdir) == expected


def test_host_patterns():
    assert host_allowed("GitLab.Example.org", ["gitlab.example.org"])
    assert host_allowed("a.b.example.org", ["*.example.org"])
    assert not host_allowed("example.org", ["*.example.org"])
    assert not host_allowed("badexample.org", ["*.example.org"])


def test_git_runs_as_argv_with_only_the_allowed_protocols():
    argv = git_argv(["https"], "fetch", "--", "https://h/x.git", "main")
    assert argv == [
        "git",
        "-c", "protocol.allow=never",
        "-c", "protocol.https.allow=always",
        "-c", "core.hooksPath=/dev/null",
        "-c", "core.symlinks=true",
        "-c", "advice.detachedHead=false",
        "fetch", "--", "https://h/x.git", "main",
    ]  # fmt: skip
    env = git_environment(["https"], "/tmp/home")
    assert env["GIT_ALLOW_PROTOCOL"] == "https"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
