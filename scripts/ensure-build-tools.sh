#!/usr/bin/env bash
# What the tests need besides Docker: debootstrap to build the stand-in base
# image (only while that image is missing) and Debian's docker-registry for the
# mirrored-registry tests. Installs only what is missing, and says so.
set -euo pipefail
say() { printf 'ensure-build-tools: %s\n' "$*" >&2; }

missing=()
if ! docker image inspect qfstack-standin/base:bookworm >/dev/null 2>&1 \
   && ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  missing+=(debootstrap)
fi
if ! command -v docker-registry >/dev/null 2>&1; then
  missing+=(docker-registry)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "the tests need: ${missing[*]}; install them (as root: apt-get install ${missing[*]})."
  exit 1
fi
say "installing ${missing[*]}..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# The package starts a registry service where an init system runs; the tests
# start their own on a free loopback port, so stop a packaged one if any.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
say "installed ${missing[*]}."
