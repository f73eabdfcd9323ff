#!/usr/bin/env bash
# Debian packages the plugin and its tests need: a virtual X server with the xcb libraries Qt 6 loads,
# OpenGL for napari's canvas, and PostgreSQL for the team-database tests of the review store.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  xvfb xauth libgl1 libegl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 \
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 \
  libxcb-randr0 libxcb-render-util0 libxcb-image0 \
  postgresql >/dev/null
