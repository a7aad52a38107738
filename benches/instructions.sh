#!/usr/bin/env bash
# User-space instructions per proxied request, canaryd against HAProxy, counted by valgrind's
# callgrind: unlike req/s and CPU time, the count does not depend on what else the machine is
# doing, so two builds can be compared on a busy 2-core box (docs/performance.md#how-it-is-measured).
#
# Each target runs alone under callgrind with instrumentation off; it is switched on after
# start-up and one warm-up request, the load generator sends keep-alive load through it (wrk for
# DURATION, h2load REQUESTS requests), and the instructions counted are divided by the requests
# it completed. Same upstreams,
# 90/10 split and protocol modes as benches/load.sh (its templates). Kernel time is not counted:
# see load.sh's sys column.
#
# Usage:  benches/instructions.sh      (needs valgrind, wrk, haproxy, nginx, curl; the HTTP/2
#                                       modes h2load, and h2 openssl)
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
#   MODE [http]    as in benches/load.sh: http (HTTP/1.1, wrk); h2 (HTTP/2 over TLS via ALPN to
#                  the proxy, HTTP/1.1 upstreams, h2load); h2c-upstream (h2c with prior knowledge
#                  on both legs: canaryd protocol = "http2", HAProxy "proto h2"; h2load); grpc (the
#                  same h2c paths, unary gRPC calls from h2load as in load.sh)
#   CONNS [8]  DURATION [6s] (wrk)  STREAMS [10] (h2load -m)  REQUESTS [10000] (h2load -n)
#              (wrk -t1 / h2load -t1: one client thread, so the proxy has the machine's other core;
#              h2load sends a fixed number of requests rather than running for a time, so that
#              no request is still in flight when counting stops: a timed run's last CONNS x
#              STREAMS requests cost instructions without being counted as requests, ~1% here)
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
STREAMS=${STREAMS:-10}
REQUESTS=${REQUESTS:-10000}
DURATION=${DURATION:-6s}
MODE=${MODE:-http}
BASE_PORT=${BASE_PORT:-18600}

die() { echo "instructions.sh: $*" >&2; exit 1; }
case $MODE in
    http) tools=(wrk) ;;
    h2) tools=(h2load openssl) ;;
    h2c-upstream | grpc) tools=(h2load) ;;
    *) die "MODE must be http, h2, h2c-upstream or grpc, not $MODE" ;;
esac
for tool in valgrind callgrind_control haproxy nginx curl "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool (Debian: apt-get install valgrind wrk haproxy nginx-light curl openssl nghttp2-client)"
done

RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/canaryd-instructions.XXXXXX)}
# mktemp makes it 0700: nginx's workers, which drop root for its default user, could not read
# the gRPC answer under it and would answer 403 in MODE=grpc.
chmod 755 "$RESULTS_DIR"
mkdir -p "$RESULTS_DIR"
PRIMARY_PORT=$BASE_PORT CANARY_PORT=$((BASE_PORT + 1)) PROXY_PORT=$((BASE_PORT + 2)) ADMIN_PORT=$((BASE_PORT + 3))
STATUS_PORT=$((BASE_PORT + 4)) TLS_PORT=$((BASE_PORT + 5))

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
UP_TPL=nginx-upstream.conf.tmpl
URL=http://127.0.0.1:$PROXY_PORT/
CURL_OPTS=()     # what every curl to a target needs (TLS, h2c prior knowledge, the gRPC call)
H2LOAD_REQ=()    # h2load options that make each request a gRPC call
HAPROXY_BIND= HAPROXY_SERVER= CANARYD_TLS= UPSTREAM_PROTOCOL=
case $MODE in
    h2)
        # The same listener set-up as load.sh's h2 mode: one self-signed ECDSA P-256 certificate.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=localhost -keyout "$UP/tls.key" -out "$UP/tls.crt" 2>"$UP/openssl.log" ||
            die "openssl could not make a certificate (see $UP/openssl.log)"
        cat "$UP/tls.crt" "$UP/tls.key" >"$UP/tls.pem"
        URL=https://127.0.0.1:$TLS_PORT/
        CURL_OPTS=(-k)
        HAPROXY_BIND=" ssl crt $UP/tls.pem alpn h2,http/1.1"
        CANARYD_TLS="[proxy.tls]
listen = [\"127.0.0.1:$TLS_PORT\"]
cert = \"$UP/tls.crt\"
key = \"$UP/tls.key\""
        ;;
    h2c-upstream | grpc)
        UP_TPL=nginx-upstream-h2c.conf.tmpl
        mkdir -p "$UP/grpc/bench.Bench"
        printf '\x00\x00\x00\x00\x0d\x0a\x0bhello world' >"$UP/grpc/bench.Bench/Call"
        CURL_OPTS=(--http2-prior-knowledge)
        HAPROXY_BIND=" proto h2" HAPROXY_SERVER=" proto h2"
        UPSTREAM_PROTOCOL='protocol = "http2"'
        if [[ $MODE == grpc ]]; then
            URL=http://127.0.0.1:$PROXY_PORT/bench.Bench/Call
            printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$UP/grpc-request.bin"
            H2LOAD_REQ=(-d "$UP/grpc-request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
            CURL_OPTS+=(--data-binary "@$UP/grpc-request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
        fi
        ;;
esac
HAPROXY_URL=${URL/:$TLS_PORT\//:$PROXY_PORT/}
# nginx binds with SO_REUSEPORT, so a second run on the same ports (another worktree's) would
# silently share the upstreams' ports instead of failing: refuse to start instead.
for port in "$PRIMARY_PORT" "$CANARY_PORT" "$STATUS_PORT" "$PROXY_PORT" "$ADMIN_PORT" "$TLS_PORT"; do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && die "port $port is taken (another run? set BASE_PORT)"
done
render "$TPL/$UP_TPL" "$UP/nginx.conf" PREFIX="$UP" \
    PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" STATUS_PORT="$STATUS_PORT"
nginx -p "$UP" -e "$UP/error.log" -c "$UP/nginx.conf" >"$UP/log" 2>&1 &
PIDS+=($!)
# load URL OUT: keep-alive load for DURATION from one client thread; prints "requests non2xx"
load() {
    if [[ $MODE == http ]]; then
        wrk -t1 -c"$CONNS" -d"$DURATION" "$1" >"$2"
        awk '/ requests in / { r = $1 } /Non-2xx/ { n = $NF } END { print r + 0, n + 0 }' "$2"
    else
        h2load -t1 -c"$CONNS" -m"$STREAMS" -n"$REQUESTS" "${H2LOAD_REQ[@]}" "$1" >"$2" 2>&1 || true
        # succeeded requests; anything not 2xx or failed is an error
        awk '/^requests:/ { r = $8; f = $10 + $12 + $14 } /^status codes:/ { n = $5 + $7 + $9 }
             END { print r + 0, n + f }' "$2"
    fi
}

# measure NAME URL CMD...: one target under callgrind; prints "NAME requests Ir Ir-per-request"
measure() {
    local name=$1 url=$2 dir=$RESULTS_DIR/$1 pid requests bad collected
    shift 2
    mkdir -p "$dir"
    for port in "$PROXY_PORT" "$TLS_PORT"; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && die "port $port is taken: another proxy would answer for $name"
    done
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
        "$@" >"$dir/valgrind.log" 2>&1 &
    pid=$!
    MEASURED=$pid
    for _ in $(seq 300); do
        curl -s "${CURL_OPTS[@]}" -o /dev/null --max-time 1 "$url" && break
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/valgrind.log" >&2; die "$name exited during start-up"; }
        sleep 0.2
    done
    [[ $(curl -s "${CURL_OPTS[@]}" -o /dev/null -w '%{http_code}' --max-time 5 "$url") == 200 ]] ||
        die "$name does not answer $url with 200"
    callgrind_control -i on "$pid" >"$dir/control-on.log" 2>&1
    grep -q OK "$dir/control-on.log" || die "$name: callgrind did not switch instrumentation on (see $dir/control-on.log)"
    read -r requests bad <<<"$(load "$url" "$dir/load.txt")"
    callgrind_control -i off "$pid" >"$dir/control-off.log" 2>&1
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    MEASURED=
    collected=$(grep -oP 'Collected : \K\d+' "$dir/valgrind.log" | tail -n 1)
    ((requests > 0)) && [[ -n $collected ]] || die "$name: no request or instruction count (see $dir)"
    ((bad == 0)) || die "$name: $bad failed or non-2xx answers under load (see $dir/load.txt)"
    printf '%-22s %10s requests %14s Ir %8s Ir/request\n' "$name" "$requests" "$collected" $((collected / requests))
    echo "$name $((collected / requests))" >>"$RESULTS_DIR/summary"
}

: >"$RESULTS_DIR/summary"
if [[ $SKIP_HAPROXY != 1 ]]; then
    mkdir -p "$RESULTS_DIR/haproxy-conf"
    render "$TPL/haproxy.cfg.tmpl" "$RESULTS_DIR/haproxy-conf/haproxy.cfg" PREFIX="$RESULTS_DIR/haproxy-conf" \
        PROXY_PORT="$PROXY_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
        BIND_OPTS="$HAPROXY_BIND" SERVER_OPTS="$HAPROXY_SERVER"
    measure haproxy "$HAPROXY_URL" haproxy -db -f "$RESULTS_DIR/haproxy-conf/haproxy.cfg"
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
            CANARY_SPLIT="weight = 10" TLS_SECTION="$proxy_lines
$CANARYD_TLS" UPSTREAM_PROTOCOL="$UPSTREAM_PROTOCOL"
        measure "canaryd-$label" "$URL" "$bin" run -c "$dir/canaryd.toml"
      done
    done
done

if [[ $SKIP_HAPROXY != 1 ]]; then
    base=$(awk '$1 == "haproxy" { print $2 }' "$RESULTS_DIR/summary")
    awk -v base="$base" -v mode="$MODE" '$1 != "haproxy" { printf "%s/haproxy (%s): %.3fx instructions per request\n", $1, mode, $2 / base }' "$RESULTS_DIR/summary"
fi
echo "raw outputs: $RESULTS_DIR"
