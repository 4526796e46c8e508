#!/bin/sh
# Installs what the benchmarks need beyond the build's own dependencies: nginx (the
# `return 200` baseline of scenario 1) and gnuplot (the plots). Idempotent: a package
# already installed is left alone. Needs root (or sudo) only when something is missing.
set -e
need=""
for pkg in nginx-light gnuplot-nox valgrind; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
# nginx-light and nginx (core) both provide /usr/sbin/nginx; either will do.
if [ -x /usr/sbin/nginx ]; then need=$(echo "$need" | sed 's/nginx-light//'); fi
need=$(echo $need)
[ -z "$need" ] && { echo "bench/setup.sh: nothing to install"; exit 0; }
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $need
# The packaged nginx service is not used (each scenario runs its own on a free port):
# stop it if the package started it, so it does not hold port 80 for nothing.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl stop nginx || true
fi
[ -f /run/nginx.pid ] && $SUDO nginx -s quit 2>/dev/null || true
echo "bench/setup.sh: installed $need"
