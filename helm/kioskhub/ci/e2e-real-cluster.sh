#!/usr/bin/env bash
# The chart's end-to-end check against a real cluster (kind or k3s) on a machine that has one:
# build KioskHub's image on the site base image, hand it to the cluster, install the chart,
# then sign in, start a server, run code in its kernel, keep a file in the home across a
# restart of the server, stop it, and see its pod go (tests/real_cluster/journey.py).
#
# Usage, from the repository root after `make .venv/.installed-test`:
#     helm/kioskhub/ci/e2e-real-cluster.sh kind     # the current context is a kind cluster
#     helm/kioskhub/ci/e2e-real-cluster.sh k3s      # this machine runs k3s (needs root)
# Needs kubectl, helm (3.8+ or 4) and podman on PATH, and kind for `kind`.
# KIOSKHUB_E2E_KEEP=1 leaves the release installed to look at afterwards.
set -euo pipefail

runtime=${1:-kind}
namespace=${KIOSKHUB_E2E_NAMESPACE:-kioskhub-e2e}
port=${KIOSKHUB_E2E_PORT:-18000}
release=kh
image=localhost/kioskhub-hub:e2e
work=$(mktemp -d)
cleanup() {
    [ -n "${forward:-}" ] && kill "$forward" 2>/dev/null || true
    if [ -z "${KIOSKHUB_E2E_KEEP:-}" ]; then
        helm uninstall "$release" --namespace "$namespace" --wait >/dev/null 2>&1 || true
        kubectl delete namespace "$namespace" --wait=false >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

for tool in kubectl helm podman; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool is not on PATH; install it" >&2; exit 1; }
done
case "$runtime" in
    kind) command -v kind >/dev/null || { echo "e2e: kind is not on PATH" >&2; exit 1; } ;;
    k3s) command -v k3s >/dev/null || { echo "e2e: k3s is not on PATH" >&2; exit 1; } ;;
    *) echo "e2e: say kind or k3s, not '$runtime'" >&2; exit 1 ;;
esac
kubectl version >/dev/null || { echo "e2e: kubectl reaches no cluster (check KUBECONFIG)" >&2; exit 1; }

echo "== building KioskHub's image"
base=$(.venv/bin/kioskhub image build-base | tail -n 1)
export CONTAINERS_CONF=$PWD/spawner/containers.conf
podman build --network host --build-arg "BASE_IMAGE=$base" -t "$image" -f helm/Containerfile .

echo "== handing it to the cluster ($runtime)"
podman save --format docker-archive -o "$work/image.tar" "$image"
case "$runtime" in
    kind) kind load image-archive "$work/image.tar" ;;
    k3s) k3s ctr images import "$work/image.tar" ;;
esac

password=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')
admin_password=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')
cat > "$work/values.yaml" <<VALUES
site:
  hub: {url: "http://127.0.0.1:$port"}
  auth: {type: shared-password, shared_password: "$password", admin_password: "$admin_password"}
  pods: {home: {capacity: 1Gi}}
image: {repository: localhost/kioskhub-hub, tag: e2e, pull_policy: IfNotPresent}
VALUES

echo "== installing the chart"
helm lint --strict helm/kioskhub --values "$work/values.yaml"
helm upgrade --install "$release" helm/kioskhub --namespace "$namespace" --create-namespace \
    --values "$work/values.yaml" --wait --timeout 10m

kubectl --namespace "$namespace" port-forward "svc/$release-proxy-public" "$port:80" \
    >"$work/port-forward.log" 2>&1 &
forward=$!
for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$port/hub/health" >/dev/null 2>&1 && break
    sleep 1
done

echo "== the journey"
.venv/bin/python -m tests.real_cluster.journey --hub-url "http://127.0.0.1:$port" \
    --user ada --password "$password"

echo "== the stopped server's pod is gone"
kubectl --namespace "$namespace" wait --for=delete pod -l component=singleuser-server \
    --timeout=120s 2>/dev/null || true  # no pod left at all is fine too
left=$(kubectl --namespace "$namespace" get pods -l component=singleuser-server -o name)
if [ -n "$left" ]; then
    echo "e2e: pods of stopped servers are still there: $left" >&2
    exit 1
fi
echo "e2e: passed"
