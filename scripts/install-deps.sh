#!/usr/bin/env bash
# Installs, idempotently, every Debian package that modcore's build, tests and
# `make run` need. Safe to run again: it asks apt-get only for what is missing.
set -euo pipefail

packages=(
  build-essential g++ cmake pkg-config clang-format
  libzmq3-dev libczmq-dev
  libprotobuf-c-dev protobuf-c-compiler
  libsodium-dev libleveldb-dev libsnappy-dev
  libcivetweb-dev libcunit1-dev libjansson-dev
  libcurl4-openssl-dev libarchive-dev
  bubblewrap libseccomp-dev libtomlplusplus-dev
  python3 zip unzip curl openssl procps
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
