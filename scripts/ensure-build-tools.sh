#!/usr/bin/env bash
# The stand-in images are built from a Debian root made by debootstrap.
# Installs debootstrap only when the base image is missing and so is the tool.
set -euo pipefail
say() { printf 'ensure-build-tools: %s\n' "$*" >&2; }

if docker image inspect qfstack-standin/base:bookworm >/dev/null 2>&1; then
  exit 0
fi
if command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "debootstrap is needed to build the stand-in base image; install it (as root: apt-get install debootstrap)."
  exit 1
fi
say "installing debootstrap to build the stand-in base image..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
say "installed debootstrap."
