"""Checks run against a real Kubernetes cluster (helm/kioskhub/ci/e2e-real-cluster.sh)."""
