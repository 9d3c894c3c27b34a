#!/usr/bin/env bash
# tests/run.sh — install what the test suite needs and run it: lint + pytest.
#
# Usage (from anywhere, as root on Debian 12; no prompts, no stdin needed):
#     bash tests/run.sh [PYTEST ARGS...]          e.g. bash tests/run.sh tests/ldap -x
#
# Steps:
#   1. Debian packages, only those missing (one "apt-get update" at most):
#      python3 + python3-venv (only to create .venv), slapd ldap-utils openssl (OpenLDAP
#      fixture), redis-server, wrk, postgresql, mariadb-server, kamailio + its PostgreSQL and
#      TLS modules, baresip-core and sip-tester (sipp) (tests/sip), chromium and
#      chromium-driver (tests/onboarding), nginx and fail2ban (tests/ops), and the Samba AD packages
#      (tests/ad/install_samba_ad.sh).
#      Services are not started by the packages (a temporary policy-rc.d when none exists).
#   2. Redis on 127.0.0.1:6379, PostgreSQL on :5432 (trust from loopback), MariaDB on :3306
#      (root without a password from loopback): started if installed but not answering.
#   3. .venv (created if missing) + pip install -e '.[test]'.
#   4. ruff check bridge tests bench; mypy --strict on bridge/ (pyproject.toml [tool.mypy]);
#      python -m pytest "$@".
# Exit status: non-zero if any step fails, if ruff fails, if pytest fails, or if pytest
# collected no tests (exit code 5).  Not root and no password-less sudo: packages cannot be
# installed; the run goes on and the tests needing them skip (or fail when CI=true).
#
# Environment: PYTHON (interpreter used to create .venv, default python3).
# .ci/run calls this with CI=true, which turns "server cannot run here" skips into failures.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
T0=$SECONDS

log() { printf '\n==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

if [[ $(id -u) == 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  SUDO=(none)
fi

# ---- 1. Debian packages ----------------------------------------------------------------
missing=()
if [[ ! -x .venv/bin/python ]]; then
  have "$PYTHON" || { PYTHON=python3; missing+=(python3); }
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi
fi
have slapd && have slapadd || missing+=(slapd)
have ldapsearch || missing+=(ldap-utils)
have openssl || missing+=(openssl)
have redis-server || missing+=(redis-server)
have pg_ctlcluster && have psql || missing+=(postgresql)
have mariadbd && have mariadb || missing+=(mariadb-server)
have wrk || missing+=(wrk)
# tests/sip: Kamailio (registrar; its PostgreSQL and TLS modules), baresip and sipp (phones)
have kamailio || missing+=(kamailio)
compgen -G '/usr/lib/*/kamailio/modules/db_postgres.so' >/dev/null || missing+=(kamailio-postgres-modules)
compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null || missing+=(kamailio-tls-modules)
have baresip || missing+=(baresip-core)
# tests/onboarding: a real headless browser, driven through its WebDriver
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
have sipp || missing+=(sip-tester)
# tests/ops: the TLS front's check and leak test, the fail2ban filter on a real log
have nginx || missing+=(nginx)
have fail2ban-regex || missing+=(fail2ban)
# the same test as install_samba_ad.sh's "already installed" check
samba_ok=1
if ! have samba || ! have samba-tool || ! have ip \
   || [[ -z "$(find /usr/lib -path '*/samba/vfs/acl_xattr.so' -print -quit 2>/dev/null)" ]]; then
  samba_ok=0
fi

if (( ${#missing[@]} )) || [[ $samba_ok == 0 ]]; then
  if [[ ${SUDO[0]:-} == none ]]; then
    echo "WARNING: not root and no password-less sudo: cannot install ${missing[*]:-}" \
         "$([[ $samba_ok == 0 ]] && echo 'samba AD packages')" >&2
  else
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then  # keep apt from starting slapd/redis/samba
      printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
      "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
      made_policy=1
    fi
    cleanup_policy() { if [[ $made_policy == 1 ]]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup_policy EXIT
    log "apt-get update (missing: ${missing[*]:-} $([[ $samba_ok == 0 ]] && echo samba-ad))"
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
    if (( ${#missing[@]} )); then
      log "apt-get install ${missing[*]}"
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
    fi
    if [[ $samba_ok == 0 ]]; then
      log "tests/ad/install_samba_ad.sh"
      "${SUDO[@]}" bash tests/ad/install_samba_ad.sh
    fi
    cleanup_policy
    trap - EXIT
  fi
fi

# ---- 2. Redis ----------------------------------------------------------------------------
redis_ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]
  else
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 \
                        && read -r line <&3 && [[ $line == +PONG* ]]' 2>/dev/null
  fi
}
if have redis-server && ! redis_ping; then
  if [[ ${SUDO[0]:-} == none ]]; then
    echo "WARNING: redis is not answering on 127.0.0.1:6379 and we cannot start it (not root)" >&2
  else
    log "starting redis-server on 127.0.0.1:6379"
    "${SUDO[@]}" mkdir -p /var/lib/redis /var/log/redis
    "${SUDO[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 50); do redis_ping && break; sleep 0.1; done
    redis_ping || { echo "redis did not answer; log tail:" >&2; tail -20 /var/log/redis/ci.log >&2; exit 1; }
  fi
fi

# ---- 2b. PostgreSQL and MariaDB (tests/sql) ----------------------------------------------
# As on the developers' machines: PostgreSQL on 127.0.0.1:5432 with trust authentication for
# local and loopback connections (user postgres), MariaDB on 127.0.0.1:3306 with a root that
# needs no password from loopback. The tests make and drop their own databases and roles.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
if have pg_ctlcluster && ! port_open 5432; then
  if [[ ${SUDO[0]:-} == none ]]; then
    echo "WARNING: PostgreSQL is not answering on 127.0.0.1:5432 and we cannot start it (not root)" >&2
  else
    pg_version=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$pg_version/main/pg_hba.conf
    if ! "${SUDO[@]}" grep -q '^# zoiper-bridge tests' "$hba"; then
      log "PostgreSQL $pg_version: trust authentication for local and loopback connections"
      printf '# zoiper-bridge tests: trust on this test machine only\nlocal all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' \
        | "${SUDO[@]}" tee "$hba" >/dev/null
    fi
    log "starting PostgreSQL $pg_version on 127.0.0.1:5432"
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
    for _ in $(seq 1 100); do port_open 5432 && break; sleep 0.1; done
    port_open 5432 || { echo "PostgreSQL did not answer on 127.0.0.1:5432" >&2; exit 1; }
  fi
fi
if have mariadbd && ! port_open 3306; then
  if [[ ${SUDO[0]:-} == none ]]; then
    echo "WARNING: MariaDB is not answering on 127.0.0.1:3306 and we cannot start it (not root)" >&2
  else
    log "starting MariaDB on 127.0.0.1:3306"
    "${SUDO[@]}" install -d -o mysql -g mysql /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then
      "${SUDO[@]}" mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    "${SUDO[@]}" start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd \
      -- --user=mysql --bind-address=127.0.0.1 --port=3306
    for _ in $(seq 1 150); do port_open 3306 && break; sleep 0.1; done
    port_open 3306 || { echo "MariaDB did not answer on 127.0.0.1:3306" >&2; exit 1; }
    # Debian's root logs in by unix socket only; the tests connect over TCP as root.
    if ! mariadb -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; then
      "${SUDO[@]}" mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    fi
  fi
fi

# ---- 3. virtualenv -----------------------------------------------------------------------
if ! .venv/bin/python -c '' >/dev/null 2>&1; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "$PYTHON is $("$PYTHON" -V 2>&1); Python >= 3.11 is needed (set PYTHON=...)" >&2; exit 1; }
  log "creating .venv with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv --clear .venv
fi
log "pip install -e '.[test]'"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# ---- 4. lint + tests -----------------------------------------------------------------------
log "ruff check bridge tests bench"
lint_rc=0
.venv/bin/ruff check bridge tests bench || lint_rc=$?

log "mypy (strict, bridge/)"
type_rc=0
.venv/bin/mypy || type_rc=$?

log "pytest $*"
test_rc=0
.venv/bin/python -m pytest "$@" || test_rc=$?

echo
if [[ $test_rc == 5 ]]; then
  echo "FAILED: pytest collected no tests (exit code 5)" >&2
elif [[ $test_rc != 0 ]]; then
  echo "FAILED: pytest exit code $test_rc" >&2
fi
[[ $lint_rc == 0 ]] || echo "FAILED: ruff check exit code $lint_rc" >&2
[[ $type_rc == 0 ]] || echo "FAILED: mypy exit code $type_rc" >&2
if [[ $test_rc != 0 || $lint_rc != 0 || $type_rc != 0 ]]; then
  echo "tests/run.sh: FAILED after $((SECONDS - T0)) s (CI=${CI:-unset})" >&2
  exit 1
fi
echo "tests/run.sh: OK after $((SECONDS - T0)) s (CI=${CI:-unset}; root: $([[ $(id -u) == 0 ]] && echo yes || echo no))"
