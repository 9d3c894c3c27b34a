#!/usr/bin/env bash
# deploy/container-check.sh — build the image from deploy/Containerfile and try it for real:
# the demo configuration from a mounted folder, a provisioning request, the HEALTHCHECK, a
# reload by SIGHUP that shows in the next answer, the non-root user, and no password in the
# container's log.
#
# Usage (repository root, root or rootless podman):
#     bash deploy/container-check.sh
#
# Environment:
#   BASE_FROM_DEBOOTSTRAP=1  no image registry reachable: make the Containerfile's base
#                            (python:3.11-slim-bookworm) locally with debootstrap from Debian's
#                            mirror (Debian 12's python3 is 3.11), trusting this host's CAs.
#   PODMAN_BUILD_OPTS        extra `podman build` options, e.g. "--isolation=chroot".
#   PODMAN_RUN_OPTS          extra `podman run` options. On a host with hybrid cgroups and a
#                            capped RLIMIT_NPROC (the project's own test machines):
#                            "--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
#                            (crun refuses cgroup v1 with a controller left on cgroup v2; podman
#                            lowers its own RLIMIT_NPROC to 32768 before starting the runtime and
#                            asks for the host's limits, which the runtime may then not raise).
#                            Building there also needs "--isolation=chroot" (same cgroups).
#   PORT                     host port for the container's 8080 (default 18080).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=docker.io/library/python:3.11-slim-bookworm
IMAGE=localhost/zoiper-bridge:check
NAME=zoiper-bridge-check
PORT=${PORT:-18080}
WORK=$(mktemp -d)
read -r -a RUN_OPTS <<< "${PODMAN_RUN_OPTS:-}"
read -r -a BUILD_OPTS <<< "${PODMAN_BUILD_OPTS:-}"
cleanup() { podman rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
step() { printf '==> %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; podman logs "$NAME" 2>&1 | tail -20 >&2 || true; exit 1; }

if [[ ${BASE_FROM_DEBOOTSTRAP:-0} == 1 ]] && ! podman image exists "$BASE"; then
  step "making $BASE with debootstrap (Debian 12, python3, python3-venv)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$WORK/rootfs" http://deb.debian.org/debian >/dev/null
  ln -sf python3 "$WORK/rootfs/usr/bin/python"
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb
  tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

step "podman build (the committed tree)"
mkdir "$WORK/context"
git archive HEAD | tar -C "$WORK/context" -x
podman build "${BUILD_OPTS[@]}" --pull=never --format docker -q \
  -f "$WORK/context/deploy/Containerfile" -t "$IMAGE" "$WORK/context" >/dev/null

step "podman run with the demo configuration in a mounted folder"
cp -r bridge/demo "$WORK/conf"
{ printf '[server]\nhost = "0.0.0.0"\nport = 8080\nlog_format = "json"\n\n'; cat bridge/demo/config.toml; } \
  > "$WORK/conf/config.toml"
chmod -R a+rX "$WORK"
podman run -d --name "$NAME" "${RUN_OPTS[@]}" -p "127.0.0.1:$PORT:8080" \
  -v "$WORK/conf:/etc/zoiper-bridge:ro" "$IMAGE" >/dev/null

url="http://127.0.0.1:$PORT/provision?user=alice&password=wonderland&version=1.14"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
answer=$(curl -fs "$url") || fail "no 200 for alice"
grep -q 'voicemail_check_extension>\*97<' <<< "$answer" || fail "unexpected document: $answer"
step "provisioned alice: 200 with configuration data"

podman healthcheck run "$NAME" >/dev/null || fail "HEALTHCHECK did not pass"
step "HEALTHCHECK: $(podman inspect "$NAME" --format '{{.State.Health.Status}}')"

user=$(podman exec "$NAME" id -u)
[[ $user != 0 ]] || fail "the gateway runs as root"
step "runs as uid $user"

sed -i 's/"\*97"/"*98"/' "$WORK/conf/config.toml"
podman kill --signal HUP "$NAME" >/dev/null
for _ in $(seq 1 50); do
  curl -fs "$url" | grep -q 'voicemail_check_extension>\*98<' && break; sleep 0.2
done
curl -fs "$url" | grep -q 'voicemail_check_extension>\*98<' || fail "SIGHUP did not reload"
step "SIGHUP reloaded the changed file"

curl -s -o /dev/null "http://127.0.0.1:$PORT/provision?user=alice&password=not-the-password"
podman logs "$NAME" > "$WORK/log" 2>&1
grep -q '"outcome": "auth_failed"' "$WORK/log" || fail "no audit line for the failed attempt"
if grep -q -e wonderland -e not-the-password "$WORK/log"; then fail "a password is in the log"; fi
step "audit lines written, no password in the log"
echo "container check: OK"
