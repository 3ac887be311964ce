#!/usr/bin/env bash
# Installs the Debian packages the test suite runs: prometheus/promtool, prometheus-alertmanager/amtool
# and kcat, plus the basics a lean image may lack. `make system-deps` runs it (`make test`, `unit` and
# `integration` depend on that), and so does .ci/run. Idempotent: when everything is present it prints
# nothing and calls neither apt-get nor sudo. Uses apt-get, through sudo when not root.
#
# It never leaves Prometheus or Alertmanager running as system services: the tests start their own
# instances on free ports, and a system Alertmanager would hold 9094, the local Kafka's SASL port.
set -euo pipefail

# binary -> Debian package that provides it. The last five are normally in the base image (Java 17 and
# Maven are documented prerequisites) and are only listed so a leaner image still works.
declare -A pkg_for=(
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-alertmanager]=prometheus-alertmanager
    [amtool]=prometheus-alertmanager
    [kcat]=kcat
    [make]=make
    [java]=openjdk-17-jre-headless
    [mvn]=maven
    [flock]=util-linux
    [openssl]=openssl   # self-signed certificates for the exporter's TLS tests
)

die() { echo "system-packages.sh: $*" >&2; exit 1; }

# "binary package" for each binary that is missing.
gaps() {
    local bin
    for bin in "${!pkg_for[@]}"; do
        command -v "$bin" >/dev/null 2>&1 || echo "$bin ${pkg_for[$bin]}"
    done
    # `python3 -m venv` needs ensurepip, which Debian ships separately.
    python3 -c 'import ensurepip' 2>/dev/null || echo "ensurepip python3-venv"
}

mapfile -t missing < <(gaps | cut -d' ' -f2 | sort -u)
((${#missing[@]})) || exit 0   # all present: quiet, no apt-get, no sudo

command -v apt-get >/dev/null || die "missing ${missing[*]}, and there is no apt-get: install them by hand"
if ((EUID == 0)); then
    as_root() { "$@"; }
else
    command -v sudo >/dev/null || die "missing ${missing[*]}: run as root, or install sudo"
    as_root() { sudo "$@"; }
fi
echo "installing Debian packages: ${missing[*]}"

# A policy-rc.d that is already there may allow service starts. Note which service packages this run
# installs fresh: their binaries did not exist before, so a service running them now is the postinst's
# doing, never one the user started, and is safe to stop.
fresh=()
for pkg in prometheus prometheus-alertmanager; do
    [[ " ${missing[*]} " == *" $pkg "* ]] || continue
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] || fresh+=("$pkg")
done

# Debian's postinst starts prometheus/alertmanager as services through invoke-rc.d, which asks
# /usr/sbin/policy-rc.d first; exit 101 forbids it (what Docker images do). Create it only when absent,
# remove only the one we created.
policy=/usr/sbin/policy-rc.d
created_policy=""
# On every exit, also failure or interrupt (a failing init script fails the install yet leaves its daemon
# running): stop the fresh services, under systemd also disable them (Debian enables these units at
# install, so they would start at the next boot); without systemd find the daemon by binary and user
# (both run as prometheus), since the init scripts' pidfiles are not reliable in containers. Then
# remove our policy-rc.d.
cleanup() {
    local svc
    for svc in "${fresh[@]}"; do
        if [[ -d /run/systemd/system ]]; then
            as_root systemctl disable --now --quiet "$svc" 2>/dev/null || true
        else
            as_root start-stop-daemon --stop --quiet --oknodo --retry=TERM/10/KILL/5 \
                --exec "/usr/bin/$svc" --user prometheus 2>/dev/null || true
        fi
    done
    [[ -z $created_policy ]] || as_root rm -f "$policy"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ ! -e $policy ]]; then
    created_policy=1
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
fi

as_root apt-get update -qq || die "apt-get update failed"
as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"

mapfile -t still < <(gaps | cut -d' ' -f1 | sort)
((${#still[@]} == 0)) || die "still missing after apt-get install: ${still[*]}"
