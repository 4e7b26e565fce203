#!/usr/bin/env bash
# Installs the system packages Mezzanine needs to build, run and test on
# Debian 12 / Ubuntu, only those missing. Safe to run again.
set -euo pipefail

packages=(
  pkg-config mold clang make g++
  libudev-dev libx11-dev libxkbcommon-dev libxcursor-dev libxrandr-dev libxi-dev
  mesa-vulkan-drivers libvulkan1 xvfb xauth mosquitto openssl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing system packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
