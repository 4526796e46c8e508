#!/usr/bin/env bash
# `make run`: start modcored on ./data with the example modules installed, print where
# to look, and keep running until Ctrl-C (which stops the core and its modules).
set -euo pipefail
BUILD=${1:-build}
DATA=${MODCORE_DATA_DIR:-./data}
LISTEN=${MODCORE_LISTEN:-127.0.0.1:7070}
URL="http://${LISTEN}"
MODCTL=("$BUILD/modctl" --data-dir "$DATA" --url "$URL")

if curl -fsS -m 1 "$URL/api/v1/health" >/dev/null 2>&1; then
  echo "run: something already answers on $URL; stop it first (or set MODCORE_LISTEN)." >&2
  exit 1
fi

mkdir -p "$DATA"
"$BUILD/modcored" --data-dir "$DATA" --listen "$LISTEN" &
core=$!
trap 'kill -TERM $core 2>/dev/null; wait $core 2>/dev/null' INT TERM EXIT

for _ in $(seq 1 100); do
  curl -fsS -m 1 "$URL/api/v1/health" >/dev/null 2>&1 && break
  kill -0 $core 2>/dev/null || { echo "run: modcored exited; see the messages above." >&2; exit 1; }
  sleep 0.1
done

for zip in "$BUILD"/examples/*.zip; do
  name=$(basename "$zip" .zip)
  if "${MODCTL[@]}" info "$name" >/dev/null 2>&1; then
    echo "run: $name is already installed"
  else
    "${MODCTL[@]}" install "$zip" || echo "run: installing $name failed (see above)" >&2
  fi
done

cat <<TXT

modcore is running.
  API:          $URL/api/v1/health
  modules:      $BUILD/modctl --data-dir $DATA list
  hello module: http://127.0.0.1:8100/hello
  logs:         $DATA/logs/<module>.log
  admin token:  $DATA/admin.token (modctl reads it from there)
Press Ctrl-C to stop the core and its modules.
TXT
wait $core
