"""Environment catalog and builds (local and GitLab CI)."""
