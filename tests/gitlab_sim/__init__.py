"""An HTTP simulation of the GitLab v4 API, for tests that drive python-gitlab against it.

GitLab cannot run on the test machine, so this package plays it: projects (ids and URL-encoded
paths, public/internal/private visibility, members and roles), pipelines with variables or
trigger tokens, jobs whose trace grows while they run, container registry repositories and
tags with sha256 digests, project webhooks that receive Pipeline Hook and Job Hook payloads,
offset pagination with GitLab's headers, and GitLab's error bodies; and GitLab as an OAuth
provider (applications, ``/oauth/authorize``, ``/oauth/token``, groups). See ``api`` for the
endpoints, ``model`` for the permission rules, ``oauth`` for sign-in and ``webhooks`` for the
payloads.

    with GitLabSimulation() as gitlab:
        ada, token = gitlab.model.add_user("ada")
        gitlab.model.add_project("lab/analysis", members={ada: "developer"})
        client = gitlab_client.Gitlab(gitlab.url, private_token=token)
"""

from .model import GitLabModel
from .server import DeliveryRecord, GitLabSimulation

__all__ = ["DeliveryRecord", "GitLabModel", "GitLabSimulation"]
