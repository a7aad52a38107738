#!/usr/bin/env bash
# Soak: canaryd for a long time under everything at once, to see that memory and descriptors
# stay flat and nothing fails that the injected faults do not explain (docs/security.md, the
# soak figures in BENCHMARKS.md).
#
# Usage:  benches/soak.sh [SECONDS]     (default 1800; needs python3, openssl, h2load)
#
#   traffic   6 HTTP/1.1 keep-alive clients and 2 over TLS (every 10th request to the fault
#             route), h2c bursts from h2load every 10 s, a WebSocket echo session every
#             second, a slow client writing its head a byte per 20 ms every 2 s
#   rollouts  route "shop" is analysed (interval 1 s, steps of 20 up to 60); a new canary
#             revision every 30 s, alternately healthy (promotes) and answering 30% 500
#             (rolls back)
#   reloads   the config file is rewritten and SIGHUP sent every 10 s
#   faults    route "faults": one endpoint resets 2% of responses mid-body and stalls 1% past
#             request_timeout, the other refuses connections
#   samples   every 10 s: RSS, open descriptors, threads (/proc), active connections, requests
#             and upstream errors (/metrics), the rollout's phase, unexpected failures so far
#
# It holds (exit 0) when, after warm-up (60 s, or a third of a shorter run), the last RSS is
# within 10% + 4 MiB of the first and descriptors within 16, no request failed that the faults
# or the bad canary do not explain, and every revision but the last reached a verdict. Exit 2
# otherwise, 1 if it could not run.
#
# Environment: CANARYD_BIN [target/release/canaryd], BASE_PORT [18600] (uses 8 ports from it),
# RESULTS_DIR [a new /tmp dir]: canaryd.log, samples.csv, summary.json; PAUSE [0.005] seconds
# between the keep-alive clients' requests.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${1:-1800}
CANARYD_BIN=${CANARYD_BIN:-target/release/canaryd}
[[ $CANARYD_BIN == /* ]] || CANARYD_BIN=$ROOT/$CANARYD_BIN
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/canaryd-soak.XXXXXX)}

for tool in python3 openssl h2load; do
    command -v "$tool" >/dev/null || { echo "soak.sh: missing $tool (Debian: python3 openssl nghttp2-client)" >&2; exit 1; }
done
[[ -x $CANARYD_BIN ]] || { echo "soak.sh: no canaryd at $CANARYD_BIN (cargo build --release first)" >&2; exit 1; }
mkdir -p "$RESULTS_DIR"
echo "soak.sh: ${DURATION}s, results in $RESULTS_DIR"
exec python3 "$HERE/soak/soak.py" --bin "$CANARYD_BIN" --duration "$DURATION" --dir "$RESULTS_DIR" \
    --base-port "${BASE_PORT:-18600}" --pause "${PAUSE:-0.005}"
