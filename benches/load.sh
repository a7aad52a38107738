#!/usr/bin/env bash
# Side-by-side load benchmark: canaryd vs HAProxy vs nginx (and "direct" to the upstream as a
# reference), all doing the same 90/10 split over keep-alive to two fast nginx upstreams on
# loopback. docs/performance.md: only the ratios from one run mean anything.
#
# Usage:  benches/load.sh            (from anywhere; needs wrk, haproxy, nginx, curl; the HTTP/2
#                                   modes h2load, and h2c-upstream and grpc also nghttp)
#
# Environment (defaults in brackets):
#   CANARYD_BIN        canaryd binary, relative to the repo root [target/release/canaryd]
#                      (this script builds nothing: cargo build --release first)
#   SKIP_CANARYD=1     leave canaryd out (haproxy, nginx, direct only)
#   CONNS [64]  THREADS [2]  DURATION [10s]  ROUNDS [3]  WARMUP [2s] (per target, before round 1)
#   RESULTS_DIR        where raw wrk outputs, rendered configs and logs go [a new /tmp dir]
#   BASE_PORT [18400]  first of the loopback ports used (upstreams, proxies, admin ports)
#   EXTRA_CANARYD_ENV  "VAR=VAL VAR2=VAL2" added to every canaryd process's environment
#   CANARYD_VARIANTS   ["default"] space-separated NAME[:VAR=VAL[,VAR=VAL...]]; one canaryd
#                      process (own ports) per variant, each a separate target in the rounds, e.g.
#                      CANARYD_VARIANTS="default multi:CANARYD_RUNTIME=multi-thread"
#   ANALYSIS=1         canaryd with [route.analysis] holding the canary at 10% (step_weights=[10],
#                      interval 1h, both metrics) instead of the static "weight = 10"; a variant
#                      may set ANALYSIS=0|1 for itself: CANARYD_VARIANTS="off:ANALYSIS=0 on:ANALYSIS=1",
#                      and BIN=/path/to/canaryd to compare two builds in one run, and TOML=key=value
#                      a line of its own in [proxy]: CANARYD_VARIANTS="off:TOML=fast_path=false on:TOML=fast_path=true"
#   SPLIT_SAMPLES [400] requests sent once per proxy to report the observed canary share (0 = skip)
#   CLIENT [wrk]       http and https modes: the HTTP/1.1 load generator, wrk or h2load (h2load --h1,
#                      one request at a time per connection; its p99 from --log-file as in the
#                      h2load modes). The two disagree on canaryd's p99 (BENCHMARKS.md, 2026-12-07
#                      "reads that drain"), so the HTTP/1.1 tail is worth reading with both.
#   KEEP_LOGS=1        keep h2load's per-request logs (ROUNDFILE.txt.log) instead of deleting them
#   MODE [http]        http: plain HTTP/1.1 with wrk (and "direct" as a reference);
#                      https: every proxy terminates TLS with the same freshly made ECDSA P-256
#                      certificate, HTTP/1.1 keep-alive with wrk (no "direct": the upstreams are plain);
#                      h2: the same TLS listeners, HTTP/2 via ALPN, load from h2load (needs h2load,
#                      Debian nghttp2-client) with STREAMS [10] concurrent streams per connection
#                      (as in every h2load mode);
#                      h2c-upstream: HTTP/2 on both sides without TLS: h2load speaks h2c (prior
#                      knowledge) to every proxy, and every proxy speaks h2c to two nginx upstreams
#                      that speak nothing else (canaryd: protocol = "http2"; HAProxy: "proto h2"
#                      servers; nginx 1.22: grpc_pass, its only HTTP/2 upstream client; and "direct");
#                      grpc: the same h2c paths, load from h2load as unary gRPC calls: POST
#                      /bench.Bench/Call with a gRPC-framed 12-byte body, content-type
#                      application/grpc and te: trailers, answered with a gRPC-framed message and the
#                      trailer grpc-status: 0 (checked through every proxy with nghttp before the runs)
#                      In the h2load modes the latency column is the p99 of h2load's --log-file.
#
# wrk runs with benches/load/tail.lua: each raw output (RESULTS_DIR/roundN-TARGET.txt) ends with a
# "tail_us" line, the latency at p90 … p99.99 and the max in microseconds, to tell a shifted tail
# from rare stalls.
#
# Every run also reads the upstream nginx's stub_status "accepts" counter before and after: the
# upstream connections the target opened during the run, per request ("connects/req"; for "direct"
# the load generator's own connections). A pool that keeps its connections has ~0 at steady state.
#
# Every run also reads the target's CPU time (user and sys, /proc/PID/stat, summed over the
# process and its children) before and after, and reports microseconds per request: far less
# sensitive to other work on the machine than req/s and p99 (the ratio against HAProxy is the
# one to read).
#
# Every run also reads the machine's TCP segments sent (/proc/net/snmp OutSegs) before and after,
# per request ("segs/req", all legs together): 2 for "direct", 4 for a proxy whose ACKs all ride on
# data; more would mean pure ACKs or split writes, each a trip through the kernel.
#
# With a "direct" row, the results end with what each throughput goal asks of canaryd's CPU per
# request, by the model of docs/performance.md ("What the throughput ratios can reach on a
# 2-core machine").
#
# Rounds are interleaved: round 1 runs haproxy, nginx, canaryd..., direct; round 2 the same order
# rotated by one; and so on. The table shows per-target medians over the rounds.
# Exit status: 0 ok, 1 set-up failure (missing tool, proxy did not start/answer), 2 measured with
# errors (socket errors, non-2xx responses, a failed wrk/h2load run, or canaryd counting a request as
# a failure in canaryd_requests_total: flagged with "!!!!" lines), 130 Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TPL=$HERE/load
PATH=$PATH:/usr/sbin:/sbin

CANARYD_BIN=${CANARYD_BIN:-target/release/canaryd}
[[ $CANARYD_BIN == /* ]] || CANARYD_BIN=$ROOT/$CANARYD_BIN
SKIP_CANARYD=${SKIP_CANARYD:-0}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
BASE_PORT=${BASE_PORT:-18400}
EXTRA_CANARYD_ENV=${EXTRA_CANARYD_ENV:-}
CANARYD_VARIANTS=${CANARYD_VARIANTS:-default}
ANALYSIS=${ANALYSIS:-0}
SPLIT_SAMPLES=${SPLIT_SAMPLES:-400}
MODE=${MODE:-http}
STREAMS=${STREAMS:-10}
CLIENT=${CLIENT:-wrk}

die() { echo "load.sh: $*" >&2; exit 1; }

# ---- prerequisites (never installs anything) ----------------------------------------------------
missing=()
case $MODE in
    http) tools=("$CLIENT" haproxy nginx curl) ;;
    https) tools=("$CLIENT" haproxy nginx curl openssl) ;;
    h2) tools=(h2load haproxy nginx curl openssl) ;;
    h2c-upstream | grpc) tools=(h2load nghttp haproxy nginx curl) ;;
    *) die "MODE must be http, https, h2, h2c-upstream or grpc, not $MODE" ;;
esac
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "load.sh: missing required tool(s): ${missing[*]}" >&2
    echo "load.sh: on Debian/Ubuntu: apt-get install -y wrk haproxy nginx-light curl openssl nghttp2-client" >&2
    exit 1
fi
if [[ $SKIP_CANARYD != 1 && ! -x $CANARYD_BIN ]]; then
    die "canaryd binary not found or not executable: $CANARYD_BIN
  build it first (cargo build --release), point CANARYD_BIN at one, or set SKIP_CANARYD=1"
fi
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
((CONNS >= THREADS)) || die "CONNS ($CONNS) must be >= THREADS ($THREADS) for wrk and h2load"
case $MODE in h2 | h2c-upstream | grpc) H2LOAD=1 ;; *) H2LOAD=0 ;; esac
[[ $CLIENT == wrk || $CLIENT == h2load ]] || die "CLIENT must be wrk or h2load, not $CLIENT"
H2LOAD_PROTO=()   # h2load's protocol options: HTTP/1.1, one request in flight per connection
if [[ $CLIENT == h2load && ($MODE == http || $MODE == https) ]]; then
    H2LOAD=1
    STREAMS=1
    H2LOAD_PROTO=(--h1)
fi
case $MODE in h2c-upstream | grpc) H2C=1 ;; *) H2C=0 ;; esac

# ---- work dirs --------------------------------------------------------------------------------------
if [[ -n ${RESULTS_DIR:-} ]]; then
    mkdir -p "$RESULTS_DIR"
    RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
else
    RESULTS_DIR=$(mktemp -d /tmp/canaryd-load.XXXXXX)
    # mktemp makes it 0700: nginx's workers, which drop root for its default user, could not
    # read the gRPC answer under it and would answer 403 in MODE=grpc.
    chmod 755 "$RESULTS_DIR"
fi
RUN=$RESULTS_DIR/run          # rendered configs, process logs, nginx prefixes, canaryd state
mkdir -p "$RUN"

# ---- TLS: one certificate for every proxy -----------------------------------------------------------
SCHEME=http
CURL_TLS=()      # options every curl to a target gets (TLS, or h2c prior knowledge)
if [[ $MODE == https || $MODE == h2 ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>"$RUN/openssl.log" ||
        { cat "$RUN/openssl.log" >&2; echo "load.sh: openssl could not make a certificate" >&2; exit 1; }
    cat "$RUN/tls.crt" "$RUN/tls.key" >"$RUN/tls.pem"   # HAProxy wants both in one file
    SCHEME=https
    CURL_TLS=(-k)
fi
((H2C)) && CURL_TLS=(--http2-prior-knowledge)

# ---- the gRPC call (MODE=grpc): one unary request and the upstream's answer -------------------------
# A gRPC message on the wire (the gRPC over HTTP/2 protocol): 1 byte compressed-flag (0), 4 bytes
# big-endian length, then the message; here a protobuf with field 1 = "world" (request) and
# "hello world" (response).
PATH_Q=/
H2LOAD_REQ=()    # h2load options that make each request a gRPC call
CURL_REQ=()      # the same for curl
if [[ $MODE == grpc ]]; then
    PATH_Q=/bench.Bench/Call
    printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$RUN/grpc-request.bin"
    H2LOAD_REQ=(-d "$RUN/grpc-request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
    CURL_REQ=(--data-binary "@$RUN/grpc-request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
fi

# ---- process bookkeeping and cleanup ----------------------------------------------------------------
PIDS=()
PNAMES=()
WRK_PID=
cleanup() {
    local rc=$? pid kids=() alive _
    trap - EXIT INT TERM
    if [[ -n ${WRK_PID:-} ]]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do
        # remember children (nginx workers) in case the master has to be killed hard
        mapfile -t -O "${#kids[@]}" kids < <(pgrep -P "$pid" 2>/dev/null || true)
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        alive=0
        for pid in "${PIDS[@]}" "${kids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}" "${kids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ((${#PIDS[@]})) && echo "load.sh: stopped ${#PIDS[@]} process(es) (${PNAMES[*]}); results in $RESULTS_DIR" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "load.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# start_proc NAME CMD... : run in the background, log to $RUN/NAME.log
start_proc() {
    local name=$1; shift
    "$@" >"$RUN/$name.log" 2>&1 &
    PIDS+=($!)
    PNAMES+=("$name")
}

pid_of() {
    local i
    for i in "${!PNAMES[@]}"; do [[ ${PNAMES[$i]} == "$1" ]] && { echo "${PIDS[$i]}"; return; }; done
    return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

NEXT_PORT=$BASE_PORT
alloc_port() {   # sets REPLY
    while port_in_use "$NEXT_PORT"; do
        NEXT_PORT=$((NEXT_PORT + 1))
    done
    REPLY=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# render TEMPLATE OUT KEY=VALUE... : replace @KEY@ (values may span lines)
render() {
    local tpl=$1 out=$2 kv text; shift 2
    text=$(<"$tpl")
    for kv in "$@"; do
        text=${text//@${kv%%=*}@/${kv#*=}}
    done
    [[ $text == *@[A-Z_]*@* ]] && grep -o '@[A-Z_]*@' <<<"$text" | sort -u | sed "s|^|load.sh: unfilled placeholder in $tpl: |" >&2 && exit 1
    printf '%s\n' "$text" >"$out"
}

wait_ready() {   # NAME URL [CURL_OPTION...] (default: the targets' options)
    local name=$1 url=$2 pid _ opts
    shift 2
    if (($#)); then opts=("$@"); else opts=("${CURL_TLS[@]}"); fi
    pid=$(pid_of "$name")
    for _ in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "load.sh: $name exited during start-up; last lines of $RUN/$name.log:" >&2
            tail -n 20 "$RUN/$name.log" >&2
            exit 1
        fi
        curl -s "${opts[@]}" -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    echo "load.sh: $name did not answer $url within 15s; last lines of $RUN/$name.log:" >&2
    tail -n 20 "$RUN/$name.log" >&2
    exit 1
}

verify_body() {   # NAME URL: status 200 and exactly "hello world!\n"
    local name=$1 url=$2 got
    [[ $MODE == grpc ]] && { verify_grpc "$@"; return; }
    got=$(curl -s "${CURL_TLS[@]}" -o "$RUN/body-$name" -w '%{http_code} %{size_download}' --max-time 5 "$url") || true
    if [[ $got != "200 13" || $(od -An -c "$RUN/body-$name" | tr -s ' ') != " h e l l o w o r l d ! \n" ]]; then
        die "$name: expected 200 with the 13-byte body \"hello world!\\n\", got \"$got\": $(head -c 200 "$RUN/body-$name" 2>/dev/null)"
    fi
}

# NAME URL: one gRPC call answers 200, content-type application/grpc, exactly the upstream's
# gRPC message, and the trailer grpc-status: 0 (nghttp: curl shows no HTTP/2 trailers)
verify_grpc() {
    local name=$1 url=$2 got want trace
    want=$(od -An -tx1 "$UP_PREFIX/grpc/bench.Bench/Call" | tr -s ' \n' ' ')
    got=$(curl -s "${CURL_TLS[@]}" "${CURL_REQ[@]}" -o "$RUN/body-$name" \
        -w '%{http_code} %{http_version} %{content_type}' --max-time 5 "$url") || true
    if [[ $got != "200 2 application/grpc" || $(od -An -tx1 "$RUN/body-$name" | tr -s ' \n' ' ') != "$want" ]]; then
        die "$name: expected a gRPC answer (200 over HTTP/2, application/grpc, the 18-byte message), got \"$got\" and body:$(od -An -tx1 "$RUN/body-$name" | head -2)"
    fi
    trace=$RUN/nghttp-$name.txt
    nghttp -v -d "$RUN/grpc-request.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        --timeout=5 "$url" >"$trace" 2>&1 || true
    # the trailer is the last header block: after the DATA frame, flagged END_STREAM
    if ! awk '/recv DATA frame/ { data = 1 } data && /recv \(stream_id=[0-9]+\) grpc-status: 0$/ { ok = 1 }
              END { exit !ok }' "$trace"; then
        die "$name: no trailer grpc-status: 0 after the response body (nghttp trace: $trace)"
    fi
}

split_check() {   # NAME URL: observed share of responses from the canary upstream
    local name=$1 url=$2 args=() i out canary primary other
    ((SPLIT_SAMPLES > 0)) || return 0
    args=(-s "${CURL_TLS[@]}" "${CURL_REQ[@]}" -o /dev/null -w '%header{x-upstream}\n' --max-time 30)
    if ((H2C)); then
        # curl 7.88 answers only the first of several URLs over one h2c prior-knowledge
        # connection (the rest end with status 000): one curl per request, 4 at a time
        out=$(seq "$SPLIT_SAMPLES" | xargs -P4 -I{} curl "${args[@]}" "$url") || true
    else
        for ((i = 0; i < SPLIT_SAMPLES; i++)); do args+=("$url"); done
        out=$(curl "${args[@]}") || true
    fi
    canary=$(grep -cx canary <<<"$out" || true)
    primary=$(grep -cx primary <<<"$out" || true)
    other=$((SPLIT_SAMPLES - canary - primary))
    printf '  %-18s split: %d primary / %d canary (%.1f%% canary)%s\n' "$name" "$primary" "$canary" \
        "$(awk -v c="$canary" -v n="$SPLIT_SAMPLES" 'BEGIN{print 100*c/n}')" \
        "$( ((other)) && echo "  !! $other responses without x-upstream header")"
    if ((canary * 100 < SPLIT_SAMPLES * 5 || canary * 100 > SPLIT_SAMPLES * 15)); then
        echo "  !!!! $name: canary share far from 10% — the targets are not doing the same work" >&2
    fi
}

# a busy machine (e.g. a concurrent cargo build) ruins the comparison: say so up front
read -r load1 _ </proc/loadavg
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
    echo "load.sh: warning: 1-minute load average is $load1 before starting — other work on this machine will skew the results" >&2
fi

# ---- upstreams --------------------------------------------------------------------------------------
alloc_port; PRIMARY_PORT=$REPLY
alloc_port; CANARY_PORT=$REPLY
alloc_port; STATUS_PORT=$REPLY
UP_PREFIX=$RUN/nginx-upstream
mkdir -p "$UP_PREFIX"
UP_TPL=nginx-upstream.conf.tmpl
if ((H2C)); then
    UP_TPL=nginx-upstream-h2c.conf.tmpl
    mkdir -p "$UP_PREFIX/grpc/bench.Bench"
    printf '\x00\x00\x00\x00\x0d\x0a\x0bhello world' >"$UP_PREFIX/grpc/bench.Bench/Call"
fi
render "$TPL/$UP_TPL" "$UP_PREFIX/nginx.conf" PREFIX="$UP_PREFIX" \
    PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" STATUS_PORT="$STATUS_PORT"
start_proc upstream nginx -p "$UP_PREFIX" -e "$UP_PREFIX/error.log" -c "$UP_PREFIX/nginx.conf"
if ((H2C)); then UP_CURL=(--http2-prior-knowledge); else UP_CURL=(); fi
wait_ready upstream "http://127.0.0.1:$PRIMARY_PORT/" "${UP_CURL[@]}"
wait_ready upstream "http://127.0.0.1:$CANARY_PORT/" "${UP_CURL[@]}"
wait_ready upstream "http://127.0.0.1:$STATUS_PORT/" --http1.1

# upstream connections accepted so far (stub_status; the read itself is one of them)
upstream_accepts() {
    curl -s --max-time 5 "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 { print $1; found = 1 } END { if (!found) print "NaN" }'
}

# ---- proxies ----------------------------------------------------------------------------------------
TARGETS=()        # names, in round-1 order
declare -A URL    # target -> url

alloc_port; HAPROXY_PORT=$REPLY
mkdir -p "$RUN/haproxy"
case $MODE in
    http) BIND_OPTS= SERVER_OPTS= ;;
    https | h2) BIND_OPTS=" ssl crt $RUN/tls.pem alpn h2,http/1.1" SERVER_OPTS= ;;
    *) BIND_OPTS=" proto h2" SERVER_OPTS=" proto h2" ;;
esac
render "$TPL/haproxy.cfg.tmpl" "$RUN/haproxy/haproxy.cfg" PREFIX="$RUN/haproxy" \
    PROXY_PORT="$HAPROXY_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
    BIND_OPTS="$BIND_OPTS" SERVER_OPTS="$SERVER_OPTS"
haproxy -c -q -f "$RUN/haproxy/haproxy.cfg" || die "haproxy rejected $RUN/haproxy/haproxy.cfg"
start_proc haproxy haproxy -db -f "$RUN/haproxy/haproxy.cfg"
TARGETS+=(haproxy); URL[haproxy]=$SCHEME://127.0.0.1:$HAPROXY_PORT$PATH_Q

alloc_port; NGINX_PORT=$REPLY
NG_PREFIX=$RUN/nginx-proxy
mkdir -p "$NG_PREFIX"
PASS='proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;'
if [[ $MODE == http ]]; then
    LISTEN_OPTS=; NGINX_TLS=
elif ((H2C)); then
    # h2c with prior knowledge on both sides; nginx 1.22 reaches an HTTP/2 upstream only through
    # its gRPC module, which forwards any request (not only gRPC ones) over HTTP/2
    LISTEN_OPTS=" http2"; NGINX_TLS=
    PASS='grpc_pass grpc://bench;
            grpc_connect_timeout 2s;
            grpc_read_timeout 60s;'
else
    # nginx 1.22 syntax (1.25+ prefers "http2 on;", and still accepts this)
    LISTEN_OPTS=" ssl http2"
    # nginx 1.22 leaves TLS 1.3 out of its default ssl_protocols: offer what the others offer
    NGINX_TLS="ssl_certificate $RUN/tls.crt;
        ssl_certificate_key $RUN/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;"
fi
render "$TPL/nginx-proxy.conf.tmpl" "$NG_PREFIX/nginx.conf" PREFIX="$NG_PREFIX" \
    PROXY_PORT="$NGINX_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
    LISTEN_OPTS="$LISTEN_OPTS" NGINX_TLS="$NGINX_TLS" PASS="$PASS"
start_proc nginx nginx -p "$NG_PREFIX" -e "$NG_PREFIX/error.log" -c "$NG_PREFIX/nginx.conf"
TARGETS+=(nginx); URL[nginx]=$SCHEME://127.0.0.1:$NGINX_PORT$PATH_Q

ANALYSIS_SPLIT='
[route.analysis]
interval = "1h"          # never judged during a run: the canary stays at the first step
threshold = 5
step_weights = [10]
min_requests = 20

[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0

[[route.analysis.metrics]]
name = "request-duration"
threshold = "500ms"
quantile = 0.99'
STATIC_SPLIT='weight = 10'

UPSTREAM_PROTOCOL=
((H2C)) && UPSTREAM_PROTOCOL='protocol = "http2"   # h2c with prior knowledge'
declare -A ADMIN_PORT   # canaryd target -> its admin port (/metrics)
CANARYD_TARGETS=()
if [[ $SKIP_CANARYD != 1 ]]; then
    read -r -a variants <<<"$CANARYD_VARIANTS"
    ((${#variants[@]})) || variants=(default)
    read -r -a extra_env <<<"$EXTRA_CANARYD_ENV"
    for v in "${variants[@]}"; do
        vname=${v%%:*}
        venv=()
        [[ $v == *:* ]] && IFS=, read -r -a venv <<<"${v#*:}"
        # ANALYSIS=0|1 in a variant picks its config (not an environment variable).
        vanalysis=$ANALYSIS
        kept=()
        vbin=$CANARYD_BIN
        vtoml=
        for kv in "${venv[@]}"; do
            case $kv in
                ANALYSIS=*) vanalysis=${kv#ANALYSIS=} ;;
                BIN=*) vbin=${kv#BIN=} ;;
                TOML=*) vtoml+=${kv#TOML=}$'\n' ;;
                *) kept+=("$kv") ;;
            esac
        done
        venv=("${kept[@]}")
        if ((vanalysis)); then CANARY_SPLIT=$ANALYSIS_SPLIT; else CANARY_SPLIT=$STATIC_SPLIT; fi
        if ((${#variants[@]} == 1)) && [[ $vname == default ]]; then t=canaryd; else t=canaryd-$vname; fi
        [[ -v URL[$t] ]] && die "duplicate canaryd variant name: $vname"
        alloc_port; port=$REPLY
        alloc_port; admin=$REPLY
        mkdir -p "$RUN/$t"
        TLS_SECTION=
        url_port=$port
        if [[ $MODE == https || $MODE == h2 ]]; then
            alloc_port; url_port=$REPLY
            TLS_SECTION="[proxy.tls]
listen = [\"127.0.0.1:$url_port\"]
cert = \"$RUN/tls.crt\"
key = \"$RUN/tls.key\""
        fi
        render "$TPL/canaryd.toml.tmpl" "$RUN/$t/canaryd.toml" PREFIX="$RUN/$t" PROXY_PORT="$port" \
            ADMIN_PORT="$admin" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
            CANARY_SPLIT="$CANARY_SPLIT" TLS_SECTION="$vtoml$TLS_SECTION" UPSTREAM_PROTOCOL="$UPSTREAM_PROTOCOL"
        printf '%s\n' "${extra_env[@]}" "${venv[@]}" | sed '/^$/d' >"$RUN/$t/env"
        [[ -x $vbin ]] || die "variant $vname: no executable canaryd at $vbin"
        start_proc "$t" env "${extra_env[@]}" "${venv[@]}" "$vbin" run -c "$RUN/$t/canaryd.toml"
        TARGETS+=("$t"); URL[$t]=$SCHEME://127.0.0.1:$url_port$PATH_Q
        CANARYD_TARGETS+=("$t"); ADMIN_PORT[$t]=$admin
    done
fi

# The upstreams speak plain HTTP/1.1 or h2c only: "direct" is a reference for the modes without TLS.
if [[ $MODE == http ]] || ((H2C)); then TARGETS+=(direct); URL[direct]=http://127.0.0.1:$PRIMARY_PORT$PATH_Q; fi

echo "== readiness and correctness"
for t in "${TARGETS[@]}"; do
    [[ $t == direct ]] || wait_ready "$t" "${URL[$t]}"
    verify_body "$t" "${URL[$t]}"
    if [[ $MODE == grpc ]]; then
        echo "  $t: ${URL[$t]} answers the gRPC call: 200, application/grpc, the message, trailer grpc-status: 0"
    else
        echo "  $t: ${URL[$t]} answers 200 with the 13-byte body"
    fi
done
for t in "${TARGETS[@]}"; do
    [[ $t == direct ]] || split_check "$t" "${URL[$t]}"
done

# ---- metadata -----------------------------------------------------------------------------------
{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    if ((H2LOAD)); then
        echo "h2load: $(h2load --version 2>&1 | head -1)"
    else
        echo "wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
    fi
    if [[ $MODE == https || $MODE == h2 ]]; then
        echo "tls: ECDSA P-256 self-signed; negotiated per target (curl, HTTP/1.1 and h2):"
        for t in "${TARGETS[@]}"; do
            echo "  $t: $(curl -skv --http1.1 -o /dev/null "${URL[$t]}" 2>&1 | grep -o 'SSL connection using.*' | head -1) / $(curl -sk --http2 -o /dev/null -w 'HTTP/%{http_version}' "${URL[$t]}")"
        done
    fi
    echo "haproxy: $(haproxy -v | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    [[ $SKIP_CANARYD == 1 ]] || echo "canaryd: $CANARYD_BIN ($("$CANARYD_BIN" --version 2>&1 | head -1 || true))"
    echo "params: MODE=$MODE CONNS=$CONNS THREADS=$THREADS DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP ANALYSIS=$ANALYSIS CLIENT=$CLIENT$( ((H2LOAD)) && echo " STREAMS=$STREAMS")"
    echo "canaryd variants: ${CANARYD_TARGETS[*]:-none}; EXTRA_CANARYD_ENV=$EXTRA_CANARYD_ENV"
    for t in "${TARGETS[@]}"; do echo "target $t ${URL[$t]}"; done
} >"$RESULTS_DIR/meta.txt"
sed 's/^/  /' "$RESULTS_DIR/meta.txt"

# ---- measuring ----------------------------------------------------------------------------------
# parse FILE -> "rps p99_ms socket_errors non2xx requests"
parse() {
    awk '
        /Requests\/sec:/ { rps = $2 }
        /^[ \t]+99%/ {
            v = $2; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            p99 = v * (unit == "us" ? 0.001 : unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : -1)
        }
        /Socket errors:/ { gsub(",", ""); se = $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { n2 = $5 }
        / requests in / { reqs = $1 }
        END { printf "%s %s %d %d %d\n", (rps == "" ? "NaN" : rps), (p99 == "" ? "NaN" : p99), se, n2, reqs }
    ' "$1"
}

# h2load's summary -> the same "rps p99_ms errors non2xx requests"; h2load prints no
# percentiles, so the p99 comes from its per-request log (FILE.log: start, status, duration in µs),
# which is deleted afterwards unless KEEP_LOGS=1
parse_h2load() {
    local p99
    p99=$(awk -F'\t' '{ print $3 }' "$1.log" 2>/dev/null | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "NaN"; else { i = int(NR * 0.99); if (i < NR * 0.99) i++; printf "%.3f\n", v[i] / 1000 } }')
    [[ ${KEEP_LOGS:-0} == 1 ]] || rm -f "$1.log"
    awk -v p99="$p99" '
        /^finished in/ { rps = $4 }
        /^requests:/ { reqs = $8; err = $10 + $12 + $14 }
        /^status codes:/ { n2 = $5 + $7 + $9 }
        END { printf "%s %s %d %d %d\n", (rps == "" ? "NaN" : rps), p99, err, n2, reqs }
    ' "$1"
}
((H2LOAD)) && parse() { parse_h2load "$1"; }
LAT=p99

# CPU time of a target: "user sys" in clock ticks, summed over the process and its children
# (nginx: master + workers; HAProxy and canaryd: one process, all threads). For "direct" the
# upstream nginx is the process measured.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {   # PID
    local p u=0 s=0 fields f
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        # fields after the ")" that ends comm: utime and stime are the 12th and 13th
        fields=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"$fields"
        u=$((u + f[11])); s=$((s + f[12]))
    done
    echo "$u $s"
}
cpu_pid() {   # TARGET
    if [[ $1 == direct ]]; then pid_of upstream; else pid_of "$1"; fi
}

ERRORS=0
CPU_DELTA=   # "user_ticks sys_ticks" of the last run_wrk's target
CONNECTS=    # upstream connections accepted during the last run_wrk
SEGMENTS=    # TCP segments the machine sent during the last run_wrk (/proc/net/snmp OutSegs)
tcp_out_segments() {
    awk '$1 == "Tcp:" && $2 ~ /^[0-9]+$/ { print $12 }' /proc/net/snmp 2>/dev/null || echo NaN
}
run_wrk() {   # TARGET OUTFILE DURATION
    local t=$1 out=$2 d=$3 pid a0 a1 seg0 seg1
    a0=$(upstream_accepts)
    seg0=$(tcp_out_segments)
    # in the background + wait, so that Ctrl-C reaches our trap at once (wrk catches SIGINT itself,
    # and bash ignores a SIGINT that a foreground child handled)
    if ((H2LOAD)); then
        h2load "${H2LOAD_PROTO[@]}" -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D"${d%s}" "${H2LOAD_REQ[@]}" \
            --log-file="$out.log" "${URL[$t]}" >"$out" 2>&1 &
    else
        wrk -t"$THREADS" -c"$CONNS" -d"$d" --latency -s "$TPL/tail.lua" "${URL[$t]}" >"$out" 2>&1 &
    fi
    WRK_PID=$!
    local cpid u0 s0 u1 s1
    cpid=$(cpu_pid "$t")
    read -r u0 s0 <<<"$(cpu_ticks "$cpid")"
    if ! wait "$WRK_PID"; then
        echo "  !!!! wrk against $t exited with an error, see $out" >&2
        ERRORS=$((ERRORS + 1))
    fi
    WRK_PID=
    read -r u1 s1 <<<"$(cpu_ticks "$cpid")"
    CPU_DELTA="$((u1 - u0)) $((s1 - s0))"
    a1=$(upstream_accepts)
    seg1=$(tcp_out_segments)
    if [[ $seg0 =~ ^[0-9]+$ && $seg1 =~ ^[0-9]+$ ]]; then SEGMENTS=$((seg1 - seg0)); else SEGMENTS=NaN; fi
    # minus the stub_status read that took a1
    if [[ $a0 == NaN || $a1 == NaN ]]; then CONNECTS=NaN; else CONNECTS=$((a1 - a0 - 1)); fi
    if [[ $t != direct ]] && ! kill -0 "$(pid_of "$t")" 2>/dev/null; then
        echo "  !!!! $t is no longer running; last lines of $RUN/$t.log:" >&2
        tail -n 20 "$RUN/$t.log" >&2
        exit 1
    fi
}

echo "== warm-up ($WARMUP per target)"
for t in "${TARGETS[@]}"; do
    run_wrk "$t" "$RESULTS_DIR/warmup-$t.txt" "$WARMUP"
done

SUMMARY=$RESULTS_DIR/summary.tsv
printf 'round\ttarget\trps\tp99_ms\tsocket_errors\tnon2xx\trequests\tuser_us_per_req\tsys_us_per_req\tupstream_connects\tconnects_per_req\ttcp_segments_per_req\n' >"$SUMMARY"
n=${#TARGETS[@]}
for ((r = 0; r < ROUNDS; r++)); do
    order=()
    for ((i = 0; i < n; i++)); do order+=("${TARGETS[(i + r) % n]}"); done
    echo "== round $((r + 1))/$ROUNDS: ${order[*]}"
    for t in "${order[@]}"; do
        out=$RESULTS_DIR/round$((r + 1))-$t.txt
        run_wrk "$t" "$out" "$DURATION"
        read -r rps p99 se n2 reqs <<<"$(parse "$out")"
        read -r cu cs <<<"$CPU_DELTA"
        read -r uus sus <<<"$(awk -v u="$cu" -v s="$cs" -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN {
            if (n > 0) printf "%.2f %.2f\n", u * 1e6 / hz / n, s * 1e6 / hz / n; else print "NaN NaN" }')"
        cpr=$(awk -v c="$CONNECTS" -v n="$reqs" 'BEGIN { if (n > 0 && c != "NaN") printf "%.6f\n", c / n; else print "NaN" }')
        spr=$(awk -v c="$SEGMENTS" -v n="$reqs" 'BEGIN { if (n > 0 && c != "NaN") printf "%.2f\n", c / n; else print "NaN" }')
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $((r + 1)) "$t" "$rps" "$p99" "$se" "$n2" "$reqs" "$uus" "$sus" "$CONNECTS" "$cpr" "$spr" >>"$SUMMARY"
        printf '  %-18s %12s req/s   %s %9s ms   cpu/req %6s us user %6s us sys   upstream connects %s (%s/req)   tcp segments/req %s   socket errors %s   non-2xx %s\n' \
            "$t" "$rps" "$LAT" "$p99" "$uus" "$sus" "$CONNECTS" "$cpr" "$spr" "$se" "$n2"
        if [[ $rps == NaN || $p99 == NaN ]] || ((se + n2 > 0 || reqs == 0)); then
            echo "  !!!! $t round $((r + 1)): $se socket errors, $n2 non-2xx responses, $reqs requests — see $out" >&2
            ERRORS=$((ERRORS + 1))
        fi
    done
done

# ---- report -------------------------------------------------------------------------------------
median() {   # TARGET COLUMN(3=rps,4=p99)
    awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $2 == t { print $c }' "$SUMMARY" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "NaN"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total_errors() {
    awk -F'\t' -v t="$1" 'NR > 1 && $2 == t { s += $5 + $6 } END { print s + 0 }' "$SUMMARY"
}

# total CPU per request (user + sys) of one round, for the median
cpu_total() {   # TARGET
    awk -F'\t' -v t="$1" 'NR > 1 && $2 == t { print $8 + $9 }' "$SUMMARY" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "NaN"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A MRPS MP99 MCPU
echo
echo "== results ($MODE): median over $ROUNDS round(s), -c$CONNS -t$THREADS -d$DURATION, $(nproc) CPUs"
echo "   (cpu: the target's user and sys time per request from /proc/PID/stat; \"direct\": the upstream's)"
echo "   (connects/req: upstream connections the upstream nginx accepted during the run, per request)"
echo "   (segs/req: TCP segments the whole machine sent during the run, per request: client, proxy and upstream legs)"
printf '%-18s %14s %12s %12s %12s %12s %14s %10s %10s\n' target "req/s" "$LAT (ms)" "user us/req" "sys us/req" "cpu us/req" "connects/req" "segs/req" errors
for t in "${TARGETS[@]}"; do
    MRPS[$t]=$(median "$t" 3)
    MP99[$t]=$(median "$t" 4)
    MCPU[$t]=$(cpu_total "$t")
    printf '%-18s %14.0f %12.3f %12.2f %12.2f %12.2f %14.6f %10.2f %10d\n' "$t" "${MRPS[$t]}" "${MP99[$t]}" \
        "$(median "$t" 8)" "$(median "$t" 9)" "${MCPU[$t]}" "$(median "$t" 11)" "$(median "$t" 12)" "$(total_errors "$t")"
done

# the goals of docs/performance.md#targets for this mode ("" = none set)
if [[ $MODE == h2 ]] || { [[ $MODE == http || $MODE == https ]] && ((CONNS > 64)); }; then
    GOAL_TP_HAPROXY=0.9 GOAL_TP_NGINX= GOAL_P99_HAPROXY=1.5    # many clients, HTTP/2 multiplexed
elif ((H2C)); then
    GOAL_TP_HAPROXY=1.0 GOAL_TP_NGINX= GOAL_P99_HAPROXY=       # h2→h2 and gRPC
else
    GOAL_TP_HAPROXY=1.0 GOAL_TP_NGINX=1.2 GOAL_P99_HAPROXY=1.0
fi

if ((${#CANARYD_TARGETS[@]})); then
    echo
    for c in "${CANARYD_TARGETS[@]}"; do
        for ref in haproxy nginx; do
            if [[ $ref == haproxy ]]; then gt=$GOAL_TP_HAPROXY gp=$GOAL_P99_HAPROXY gx=0.9; else gt=$GOAL_TP_NGINX gp= gx=; fi
            awk -v c="$c" -v ref="$ref" -v cr="${MRPS[$c]}" -v rr="${MRPS[$ref]}" \
                -v cp="${MP99[$c]}" -v rp="${MP99[$ref]}" -v lat="$LAT" \
                -v cc="${MCPU[$c]}" -v rc="${MCPU[$ref]}" -v gt="$gt" -v gp="$gp" -v gx="$gx" 'BEGIN {
                    tr = rr > 0 ? cr / rr : 0; pr = rp > 0 ? cp / rp : 0; xr = rc > 0 ? cc / rc : 0
                    printf "%-26s throughput %6.3fx", c "/" ref ":", tr
                    if (gt != "") printf " (goal >= %.1f: %-4s)", gt, (tr >= gt + 0 ? "ok" : "MISS")
                    printf "   %s %6.3fx", lat, pr
                    if (gp != "") printf " (goal <= %.1f: %-4s)", gp, (pr <= gp + 0 ? "ok" : "MISS")
                    printf "   cpu/req %6.3fx", xr
                    if (gx != "") printf " (aim <= %.1f: %s)", gx, (xr <= gx + 0 ? "ok" : "MISS")
                    printf "\n"
                }'
        done
    done
    echo "(goals from docs/performance.md; with few/short rounds on a shared 2-core box they are indicative only)"
    # What the throughput goals ask of canaryd's CPU when the load generator and the upstream
    # share the machine (docs/performance.md, "What the throughput ratios can reach on a 2-core
    # machine"): B = CPUs / direct req/s is their CPU per request, and a target with C per
    # request reaches about CPUs / (B + C).
    if [[ -n ${MRPS[direct]:-} ]]; then
        for ref in haproxy nginx; do
            if [[ $ref == haproxy ]]; then g=$GOAL_TP_HAPROXY; else g=$GOAL_TP_NGINX; fi
            [[ -n $g ]] || continue
            awk -v ref="$ref" -v g="$g" -v n="$(nproc)" -v d="${MRPS[direct]}" -v rc="${MCPU[$ref]}" 'BEGIN {
                if (d <= 0 || rc == "NaN") exit
                b = n * 1e6 / d
                printf "model: CPU of load generator + upstream B = %.2f us/req; %.2fx %s needs canaryd <= %.2f us/req\n", b, g, ref, (b + rc) / g - b
            }'
        done
    fi
fi

# canaryd judges every request itself ([route.failures]): every one here should be a success
# (for gRPC: grpc-status 0 read from the trailers), or the targets did not do the same work
if ((${#CANARYD_TARGETS[@]})); then
    echo
    for c in "${CANARYD_TARGETS[@]}"; do
        m=$RESULTS_DIR/metrics-$c.txt
        if ! curl -s --max-time 5 -o "$m" "http://127.0.0.1:${ADMIN_PORT[$c]}/metrics"; then
            echo "  !!!! $c: could not read its /metrics" >&2
            ERRORS=$((ERRORS + 1))
            continue
        fi
        # sum canaryd_requests_total by outcome, and by grpc_code where present
        read -r ok failed codes <<<"$(awk '
            /^canaryd_requests_total\{/ {
                n = $NF + 0
                if ($0 ~ /outcome="failure"/) f += n; else if ($0 ~ /outcome="success"/) s += n
                if (match($0, /grpc_code="[A-Z_]+"/) && n > 0) g[substr($0, RSTART + 11, RLENGTH - 12)] += n
            }
            END { list = ""; for (k in g) list = list (list == "" ? "" : ",") k "=" g[k]; printf "%d %d %s\n", s, f, (list == "" ? "-" : list) }
        ' "$m")"
        echo "  $c counted $ok successful and $failed failed requests (canaryd_requests_total; grpc_code: $codes)"
        if ((failed > 0 || ok == 0)); then
            echo "  !!!! $c counted $failed failures (or no success at all): see $m and $RUN/$c.log" >&2
            ERRORS=$((ERRORS + 1))
        fi
    done
fi

echo
echo "raw wrk outputs, summary.tsv, rendered configs and logs: $RESULTS_DIR"
if ((ERRORS)); then
    echo
    echo "!!!!!!!! $ERRORS run(s) had errors (socket errors / non-2xx / wrk or h2load failure / canaryd failures) — see above !!!!!!!!" >&2
    exit 2
fi
