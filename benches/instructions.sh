#!/usr/bin/env bash
# User-space instructions per proxied request, canaryd against HAProxy, counted by valgrind's
# callgrind: unlike req/s and CPU time, the count does not depend on what else the machine is
# doing, so two builds can be compared on a busy 2-core box (docs/performance.md#how-it-is-measured).
#
# Each target runs alone under callgrind with instrumentation off; it is switched on after
# start-up and one warm-up request, wrk sends keep-alive load through it for DURATION, and the
# instructions counted are divided by the requests wrk completed. Same upstreams and 90/10 split
# as benches/load.sh (its templates). Kernel time is not counted: see load.sh's sys column.
#
# Usage:  benches/instructions.sh      (needs valgrind, wrk, haproxy, nginx, curl)
#
# Environment (defaults in brackets):
#   CANARYD_BINS   space-separated NAME=PATH canaryd builds [canaryd=target/release/canaryd]
#   CANARYD_PROXY  extra lines for canaryd's [proxy] table, e.g. 'release_buffers_after = "0s"' []
#   ENGINES        space-separated proxy.http1_engine values; each build is measured once per
#                  engine, named NAME-ENGINE (e.g. ENGINES="hyper canaryd") [the config's default]
#   FAST_PATHS     space-separated proxy.fast_path values; each build (and engine) is measured
#                  once per value, named NAME[-ENGINE]-fast or -nofast (e.g. FAST_PATHS="false true")
#                  [the config's default]
#   SKIP_HAPROXY=1 leave HAProxy out
#   CONNS [8]  DURATION [6s]  (wrk -t1: one client thread, so the proxy has the machine's other core)
#   BASE_PORT [18600]  RESULTS_DIR [a new /tmp dir]
# Exit status: 0 ok, 1 set-up failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TPL=$HERE/load
PATH=$PATH:/usr/sbin:/sbin

CANARYD_BINS=${CANARYD_BINS:-canaryd=target/release/canaryd}
CANARYD_PROXY=${CANARYD_PROXY:-}
ENGINES=${ENGINES:-}
FAST_PATHS=${FAST_PATHS:-}
SKIP_HAPROXY=${SKIP_HAPROXY:-0}
CONNS=${CONNS:-8}
DURATION=${DURATION:-6s}
BASE_PORT=${BASE_PORT:-18600}

die() { echo "instructions.sh: $*" >&2; exit 1; }
for tool in valgrind callgrind_control wrk haproxy nginx curl; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool (Debian: apt-get install valgrind wrk haproxy nginx-light curl)"
done

RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/canaryd-instructions.XXXXXX)}
mkdir -p "$RESULTS_DIR"
PRIMARY_PORT=$BASE_PORT CANARY_PORT=$((BASE_PORT + 1)) PROXY_PORT=$((BASE_PORT + 2)) ADMIN_PORT=$((BASE_PORT + 3))
STATUS_PORT=$((BASE_PORT + 4))

render() {   # TEMPLATE OUT KEY=VALUE...
    local text kv
    text=$(<"$1")
    for kv in "${@:3}"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
    printf '%s\n' "$text" >"$2"
}

PIDS=()
MEASURED=
cleanup() {
    local pid
    # A target under valgrind can outlive a TERM for seconds; it must not outlive the script.
    [[ -n $MEASURED ]] && kill -KILL "$MEASURED" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

UP=$RESULTS_DIR/upstream
mkdir -p "$UP"
render "$TPL/nginx-upstream.conf.tmpl" "$UP/nginx.conf" PREFIX="$UP" \
    PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" STATUS_PORT="$STATUS_PORT"
nginx -p "$UP" -e "$UP/error.log" -c "$UP/nginx.conf" >"$UP/log" 2>&1 &
PIDS+=($!)

URL=http://127.0.0.1:$PROXY_PORT/
# measure NAME CMD...: one target under callgrind; prints "NAME requests Ir Ir-per-request"
measure() {
    local name=$1 dir=$RESULTS_DIR/$1 pid requests collected
    shift
    mkdir -p "$dir"
    (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && die "port $PROXY_PORT is taken: another proxy would answer for $name"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
        "$@" >"$dir/valgrind.log" 2>&1 &
    pid=$!
    MEASURED=$pid
    for _ in $(seq 300); do
        curl -s -o /dev/null --max-time 1 "$URL" && break
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/valgrind.log" >&2; die "$name exited during start-up"; }
        sleep 0.2
    done
    curl -s -o /dev/null --max-time 5 "$URL" || die "$name does not answer $URL"
    callgrind_control -i on "$pid" >"$dir/control-on.log" 2>&1
    grep -q OK "$dir/control-on.log" || die "$name: callgrind did not switch instrumentation on (see $dir/control-on.log)"
    wrk -t1 -c"$CONNS" -d"$DURATION" "$URL" >"$dir/wrk.txt"
    callgrind_control -i off "$pid" >"$dir/control-off.log" 2>&1
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    MEASURED=
    requests=$(grep -oP '^\s+\K\d+(?= requests in)' "$dir/wrk.txt")
    collected=$(grep -oP 'Collected : \K\d+' "$dir/valgrind.log" | tail -n 1)
    [[ -n $requests && -n $collected ]] || die "$name: no request or instruction count (see $dir)"
    grep -q 'Non-2xx' "$dir/wrk.txt" && die "$name: non-2xx answers under load (see $dir/wrk.txt)"
    printf '%-22s %10s requests %14s Ir %8s Ir/request\n' "$name" "$requests" "$collected" $((collected / requests))
    echo "$name $((collected / requests))" >>"$RESULTS_DIR/summary"
}

: >"$RESULTS_DIR/summary"
if [[ $SKIP_HAPROXY != 1 ]]; then
    mkdir -p "$RESULTS_DIR/haproxy-conf"
    render "$TPL/haproxy.cfg.tmpl" "$RESULTS_DIR/haproxy-conf/haproxy.cfg" PREFIX="$RESULTS_DIR/haproxy-conf" \
        PROXY_PORT="$PROXY_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" BIND_OPTS= SERVER_OPTS=
    measure haproxy haproxy -db -f "$RESULTS_DIR/haproxy-conf/haproxy.cfg"
fi
for entry in $CANARYD_BINS; do
    name=${entry%%=*} bin=${entry#*=}
    [[ $bin == /* ]] || bin=$ROOT/$bin
    [[ -x $bin ]] || die "canaryd binary not found: $bin (cargo build --release first)"
    for engine in ${ENGINES:-default}; do
      for fast in ${FAST_PATHS:-default}; do
        label=$name proxy_lines=$CANARYD_PROXY
        if [[ $engine != default ]]; then
            label=$name-$engine
            proxy_lines=$(printf '%s\nhttp1_engine = "%s"' "$proxy_lines" "$engine")
        fi
        if [[ $fast != default ]]; then
            [[ $fast == true ]] && label=$label-fast || label=$label-nofast
            proxy_lines=$(printf '%s\nfast_path = %s' "$proxy_lines" "$fast")
        fi
        dir=$RESULTS_DIR/conf-$label
        mkdir -p "$dir"
        render "$TPL/canaryd.toml.tmpl" "$dir/canaryd.toml" PREFIX="$dir" PROXY_PORT="$PROXY_PORT" \
            ADMIN_PORT="$ADMIN_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
            CANARY_SPLIT="weight = 10" TLS_SECTION="$proxy_lines" UPSTREAM_PROTOCOL=
        measure "canaryd-$label" "$bin" run -c "$dir/canaryd.toml"
      done
    done
done

if [[ $SKIP_HAPROXY != 1 ]]; then
    base=$(awk '$1 == "haproxy" { print $2 }' "$RESULTS_DIR/summary")
    awk -v base="$base" '$1 != "haproxy" { printf "%s/haproxy: %.3fx instructions per request\n", $1, $2 / base }' "$RESULTS_DIR/summary"
fi
echo "raw outputs: $RESULTS_DIR"
