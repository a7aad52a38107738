#!/usr/bin/env bash
# Side-by-side load benchmark: canaryd vs HAProxy vs nginx (and "direct" to the upstream as a
# reference), all doing the same 90/10 split over keep-alive to two fast nginx upstreams on
# loopback. docs/performance.md: only the ratios from one run mean anything.
#
# Usage:  benches/load.sh            (from anywhere; needs wrk, haproxy, nginx, curl)
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
#                      and BIN=/path/to/canaryd to compare two builds in one run
#   SPLIT_SAMPLES [400] requests sent once per proxy to report the observed canary share (0 = skip)
#   MODE [http]        http: plain HTTP/1.1 with wrk (and "direct" as a reference);
#                      https: every proxy terminates TLS with the same freshly made ECDSA P-256
#                      certificate, HTTP/1.1 keep-alive with wrk (no "direct": the upstreams are plain);
#                      h2: the same TLS listeners, HTTP/2 via ALPN, load from h2load (needs h2load,
#                      Debian nghttp2-client) with STREAMS [10] concurrent streams per connection;
#                      h2load reports no percentiles, so the latency column is the mean;
#                      h2c: HTTP/2 without TLS end to end — h2load to every proxy by prior knowledge,
#                      and every proxy to h2c upstreams (HAProxy "proto h2" servers, nginx grpc_pass,
#                      canaryd protocol = "http2"), STREAMS per connection;
#                      grpc: h2c with gRPC unary calls: h2load POSTs a gRPC-framed message with
#                      content-type application/grpc and te: trailers to /bench.Echo/Unary, and the
#                      upstreams answer with content-type application/grpc and trailer grpc-status 0
#                      (nginx answers with "return" before reading the request body; nginx as the
#                      proxy, grpc_pass, then logs "upstream sent frame for unknown stream" and
#                      answers 502 for part of the calls: in a 1 s smoke run on 2026-12-07 its
#                      column had errors, HAProxy's and canaryd's none — read nginx's grpc row
#                      with that in mind)
#
# Every run also reads the upstream nginx's stub_status "accepts" before and after, and reports
# the connections the target opened to the upstreams per request ("conn/req"): at steady state a
# pool that keeps what it uses is near 0.
#
# Every run also reads the target's CPU time (user and sys, /proc/PID/stat, summed over the
# process and its children) before and after, and reports microseconds per request: far less
# sensitive to other work on the machine than req/s and p99 (the ratio against HAProxy is the
# one to read).
#
# Rounds are interleaved: round 1 runs haproxy, nginx, canaryd..., direct; round 2 the same order
# rotated by one; and so on. The table shows per-target medians over the rounds.
# Exit status: 0 ok, 1 set-up failure (missing tool, proxy did not start/answer), 2 measured with
# errors (socket errors, non-2xx responses or a failed wrk run: flagged with "!!!!" lines), 130 Ctrl-C.
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

die() { echo "load.sh: $*" >&2; exit 1; }

# ---- prerequisites (never installs anything) ----------------------------------------------------
missing=()
case $MODE in
    http) tools=(wrk haproxy nginx curl) ;;
    https) tools=(wrk haproxy nginx curl openssl) ;;
    h2) tools=(h2load haproxy nginx curl openssl) ;;
    h2c | grpc) tools=(h2load haproxy nginx curl) ;;
    *) die "MODE must be http, https, h2, h2c or grpc, not $MODE" ;;
esac
# TLS on the proxies' listeners; h2load instead of wrk; h2c to the upstreams
case $MODE in https | h2) TLS=1 ;; *) TLS=0 ;; esac
case $MODE in h2 | h2c | grpc) H2LOAD=1 ;; *) H2LOAD=0 ;; esac
case $MODE in h2c | grpc) H2C=1 ;; *) H2C=0 ;; esac
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
((CONNS >= THREADS)) || die "CONNS ($CONNS) must be >= THREADS ($THREADS) for wrk"

# ---- work dirs --------------------------------------------------------------------------------------
if [[ -n ${RESULTS_DIR:-} ]]; then
    mkdir -p "$RESULTS_DIR"
    RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
else
    RESULTS_DIR=$(mktemp -d /tmp/canaryd-load.XXXXXX)
fi
RUN=$RESULTS_DIR/run          # rendered configs, process logs, nginx prefixes, canaryd state
mkdir -p "$RUN"

# ---- TLS: one certificate for every proxy -----------------------------------------------------------
SCHEME=http
CURL_TLS=()   # curl's options for the proxies' listeners
((H2C)) && CURL_TLS=(--http2-prior-knowledge)
if ((TLS)); then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>"$RUN/openssl.log" ||
        { cat "$RUN/openssl.log" >&2; echo "load.sh: openssl could not make a certificate" >&2; exit 1; }
    cat "$RUN/tls.crt" "$RUN/tls.key" >"$RUN/tls.pem"   # HAProxy wants both in one file
    SCHEME=https
    CURL_TLS=(-k)
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

wait_ready() {   # NAME URL
    local name=$1 url=$2 pid _
    pid=$(pid_of "$name")
    for _ in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "load.sh: $name exited during start-up; last lines of $RUN/$name.log:" >&2
            tail -n 20 "$RUN/$name.log" >&2
            exit 1
        fi
        curl -s "${CURL_TLS[@]}" -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    echo "load.sh: $name did not answer $url within 15s; last lines of $RUN/$name.log:" >&2
    tail -n 20 "$RUN/$name.log" >&2
    exit 1
}

verify_body() {   # NAME URL: status 200 and exactly "hello world!\n"
    local name=$1 url=$2 got
    got=$(curl -s "${CURL_TLS[@]}" -o "$RUN/body-$name" -w '%{http_code} %{size_download}' --max-time 5 "$url") || true
    if [[ $got != "200 13" || $(od -An -c "$RUN/body-$name" | tr -s ' ') != " h e l l o w o r l d ! \n" ]]; then
        die "$name: expected 200 with the 13-byte body \"hello world!\\n\", got \"$got\": $(head -c 200 "$RUN/body-$name" 2>/dev/null)"
    fi
}

split_check() {   # NAME URL: observed share of responses from the canary upstream
    local name=$1 url=$2 urls=() i out canary primary other
    ((SPLIT_SAMPLES > 0)) || return 0
    for ((i = 0; i < SPLIT_SAMPLES; i++)); do urls+=("$url"); done
    out=$(curl -s "${CURL_TLS[@]}" -o /dev/null -w '%header{x-upstream}\n' --max-time 30 "${urls[@]}") || true
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
UP_HTTP2=; UP_GRPC=
((H2C)) && UP_HTTP2=" http2"
[[ $MODE == grpc ]] && UP_GRPC="default_type application/grpc; add_trailer grpc-status 0; "
render "$TPL/nginx-upstream.conf.tmpl" "$UP_PREFIX/nginx.conf" \
    PREFIX="$UP_PREFIX" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
    STATUS_PORT="$STATUS_PORT" UP_HTTP2="$UP_HTTP2" UP_GRPC="$UP_GRPC"
start_proc upstream nginx -p "$UP_PREFIX" -e "$UP_PREFIX/error.log" -c "$UP_PREFIX/nginx.conf"
UP_CURL=()
((H2C)) && UP_CURL=(--http2-prior-knowledge)
for port in "$PRIMARY_PORT" "$CANARY_PORT" "$STATUS_PORT"; do
    ready=0
    for _ in $(seq 150); do
        opts=("${UP_CURL[@]}")
        [[ $port == "$STATUS_PORT" ]] && opts=()
        curl -s "${opts[@]}" -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && { ready=1; break; }
        sleep 0.1
    done
    ((ready)) || { tail -n 20 "$RUN/upstream.log" >&2; die "the upstream nginx did not answer on port $port within 15s"; }
done

# connections the upstream nginx accepted so far (stub_status "accepts")
upstream_accepts() {
    curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 { print $1 }'
}

# the gRPC request body: one uncompressed frame holding a 4-byte message
printf '\x00\x00\x00\x00\x04\x0a\x02hi' >"$RUN/grpc-request.bin"

# ---- proxies ----------------------------------------------------------------------------------------
TARGETS=()        # names, in round-1 order
declare -A URL    # target -> url

alloc_port; HAPROXY_PORT=$REPLY
mkdir -p "$RUN/haproxy"
BIND_TLS=; SERVER_PROTO=
((TLS)) && BIND_TLS=" ssl crt $RUN/tls.pem alpn h2,http/1.1"
((H2C)) && { BIND_TLS=" proto h2"; SERVER_PROTO=" proto h2"; }
render "$TPL/haproxy.cfg.tmpl" "$RUN/haproxy/haproxy.cfg" PREFIX="$RUN/haproxy" \
    PROXY_PORT="$HAPROXY_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" BIND_TLS="$BIND_TLS" \
    SERVER_PROTO="$SERVER_PROTO"
haproxy -c -q -f "$RUN/haproxy/haproxy.cfg" || die "haproxy rejected $RUN/haproxy/haproxy.cfg"
start_proc haproxy haproxy -db -f "$RUN/haproxy/haproxy.cfg"
TARGETS+=(haproxy); URL[haproxy]=$SCHEME://127.0.0.1:$HAPROXY_PORT/

alloc_port; NGINX_PORT=$REPLY
NG_PREFIX=$RUN/nginx-proxy
mkdir -p "$NG_PREFIX"
NGINX_PASS='proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;'
if ((H2C)); then
    # h2c in (prior knowledge), HTTP/2 to the h2c upstreams: grpc_pass is nginx's HTTP/2 client
    LISTEN_TLS=" http2"; NGINX_TLS=
    NGINX_PASS='grpc_pass grpc://bench;
            grpc_connect_timeout 2s;
            grpc_read_timeout 60s;'
elif ((!TLS)); then
    LISTEN_TLS=; NGINX_TLS=
else
    # nginx 1.22 syntax (1.25+ prefers "http2 on;", and still accepts this)
    LISTEN_TLS=" ssl http2"
    # nginx 1.22 leaves TLS 1.3 out of its default ssl_protocols: offer what the others offer
    NGINX_TLS="ssl_certificate $RUN/tls.crt;
        ssl_certificate_key $RUN/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;"
fi
render "$TPL/nginx-proxy.conf.tmpl" "$NG_PREFIX/nginx.conf" PREFIX="$NG_PREFIX" \
    PROXY_PORT="$NGINX_PORT" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
    LISTEN_TLS="$LISTEN_TLS" NGINX_TLS="$NGINX_TLS" NGINX_PASS="$NGINX_PASS"
start_proc nginx nginx -p "$NG_PREFIX" -e "$NG_PREFIX/error.log" -c "$NG_PREFIX/nginx.conf"
TARGETS+=(nginx); URL[nginx]=$SCHEME://127.0.0.1:$NGINX_PORT/

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
        for kv in "${venv[@]}"; do
            case $kv in
                ANALYSIS=*) vanalysis=${kv#ANALYSIS=} ;;
                BIN=*) vbin=${kv#BIN=} ;;
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
        if ((TLS)); then
            alloc_port; url_port=$REPLY
            TLS_SECTION="[proxy.tls]
listen = [\"127.0.0.1:$url_port\"]
cert = \"$RUN/tls.crt\"
key = \"$RUN/tls.key\""
        fi
        render "$TPL/canaryd.toml.tmpl" "$RUN/$t/canaryd.toml" PREFIX="$RUN/$t" PROXY_PORT="$port" \
            ADMIN_PORT="$admin" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
            CANARY_SPLIT="$CANARY_SPLIT" TLS_SECTION="$TLS_SECTION" \
            UPSTREAM_PROTOCOL="$( ((H2C)) && echo 'protocol = "http2"')"
        printf '%s\n' "${extra_env[@]}" "${venv[@]}" | sed '/^$/d' >"$RUN/$t/env"
        [[ -x $vbin ]] || die "variant $vname: no executable canaryd at $vbin"
        start_proc "$t" env "${extra_env[@]}" "${venv[@]}" "$vbin" run -c "$RUN/$t/canaryd.toml"
        TARGETS+=("$t"); URL[$t]=$SCHEME://127.0.0.1:$url_port/
        CANARYD_TARGETS+=("$t")
    done
fi

# The upstreams speak no TLS: "direct" is a reference for the cleartext modes.
((TLS)) || { TARGETS+=(direct); URL[direct]=http://127.0.0.1:$PRIMARY_PORT/; }

echo "== readiness and correctness"
for t in "${TARGETS[@]}"; do
    [[ $t == direct ]] || wait_ready "$t" "${URL[$t]}"
    verify_body "$t" "${URL[$t]}"
    echo "  $t: ${URL[$t]} answers 200 with the 13-byte body"
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
    if ((TLS)); then
        echo "tls: ECDSA P-256 self-signed; negotiated per target (curl, HTTP/1.1 and h2):"
        for t in "${TARGETS[@]}"; do
            echo "  $t: $(curl -skv --http1.1 -o /dev/null "${URL[$t]}" 2>&1 | grep -o 'SSL connection using.*' | head -1) / $(curl -sk --http2 -o /dev/null -w 'HTTP/%{http_version}' "${URL[$t]}")"
        done
    fi
    echo "haproxy: $(haproxy -v | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    [[ $SKIP_CANARYD == 1 ]] || echo "canaryd: $CANARYD_BIN ($("$CANARYD_BIN" --version 2>&1 | head -1 || true))"
    echo "params: MODE=$MODE CONNS=$CONNS THREADS=$THREADS DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP ANALYSIS=$ANALYSIS$( ((H2LOAD)) && echo " STREAMS=$STREAMS")"
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

# h2load's summary -> the same "rps latency_ms errors non2xx requests" (latency: the mean)
parse_h2load() {
    awk '
        /^finished in/ { rps = $4 }
        /^requests:/ { reqs = $8; err = $10 + $12 + $14 }
        /^status codes:/ { ok = $3 }
        /^time for request:/ {
            v = $6; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            lat = v * (unit == "us" ? 0.001 : unit == "ms" ? 1 : unit == "s" ? 1000 : -1)
        }
        END { printf "%s %s %d %d %d\n", (rps == "" ? "NaN" : rps), (lat == "" ? "NaN" : lat), err, reqs - ok, reqs }
    ' "$1"
}
((H2LOAD)) && parse() { parse_h2load "$1"; }
LAT=p99
((H2LOAD)) && LAT=mean

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
CONNECTS=    # upstream connections the last run_wrk's target opened
run_wrk() {   # TARGET OUTFILE DURATION
    local t=$1 out=$2 d=$3 pid
    # in the background + wait, so that Ctrl-C reaches our trap at once (wrk catches SIGINT itself,
    # and bash ignores a SIGINT that a foreground child handled)
    local a0
    a0=$(upstream_accepts)
    if [[ $MODE == grpc ]]; then
        h2load -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D"${d%s}" -d "$RUN/grpc-request.bin" \
            -H 'content-type: application/grpc' -H 'te: trailers' "${URL[$t]}bench.Echo/Unary" >"$out" 2>&1 &
    elif ((H2LOAD)); then
        h2load -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D"${d%s}" "${URL[$t]}" >"$out" 2>&1 &
    else
        wrk -t"$THREADS" -c"$CONNS" -d"$d" --latency "${URL[$t]}" >"$out" 2>&1 &
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
    CONNECTS=$(($(upstream_accepts) - a0))
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
printf 'round\ttarget\trps\tp99_ms\tsocket_errors\tnon2xx\trequests\tuser_us_per_req\tsys_us_per_req\tconnects_per_req\n' >"$SUMMARY"
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
        read -r uus sus cpr <<<"$(awk -v u="$cu" -v s="$cs" -v n="$reqs" -v hz="$CLK_TCK" -v c="$CONNECTS" 'BEGIN {
            if (n > 0) printf "%.2f %.2f %.5f\n", u * 1e6 / hz / n, s * 1e6 / hz / n, c / n; else print "NaN NaN NaN" }')"
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $((r + 1)) "$t" "$rps" "$p99" "$se" "$n2" "$reqs" "$uus" "$sus" "$cpr" >>"$SUMMARY"
        printf '  %-18s %12s req/s   %s %9s ms   cpu/req %6s us user %6s us sys   conn/req %s   socket errors %s   non-2xx %s\n' \
            "$t" "$rps" "$LAT" "$p99" "$uus" "$sus" "$cpr" "$se" "$n2"
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
printf '%-18s %14s %12s %12s %12s %12s %10s %10s\n' target "req/s" "$LAT (ms)" "user us/req" "sys us/req" "cpu us/req" conn/req errors
for t in "${TARGETS[@]}"; do
    MRPS[$t]=$(median "$t" 3)
    MP99[$t]=$(median "$t" 4)
    MCPU[$t]=$(cpu_total "$t")
    printf '%-18s %14.0f %12.3f %12.2f %12.2f %12.2f %10.5f %10d\n' "$t" "${MRPS[$t]}" "${MP99[$t]}" \
        "$(median "$t" 8)" "$(median "$t" 9)" "${MCPU[$t]}" "$(median "$t" 10)" "$(total_errors "$t")"
done

if ((${#CANARYD_TARGETS[@]})); then
    echo
    for c in "${CANARYD_TARGETS[@]}"; do
        for ref in haproxy nginx; do
            awk -v c="$c" -v ref="$ref" -v cr="${MRPS[$c]}" -v rr="${MRPS[$ref]}" \
                -v cp="${MP99[$c]}" -v rp="${MP99[$ref]}" -v lat="$LAT" \
                -v cc="${MCPU[$c]}" -v rc="${MCPU[$ref]}" 'BEGIN {
                    tr = rr > 0 ? cr / rr : 0; pr = rp > 0 ? cp / rp : 0; xr = rc > 0 ? cc / rc : 0
                    gt = ref == "haproxy" ? 1.0 : 1.2
                    printf "%-26s throughput %6.3fx (goal >= %.1f: %-4s)   %s %6.3fx", \
                        c "/" ref ":", tr, gt, (tr >= gt ? "ok" : "MISS"), lat, pr
                    if (ref == "haproxy") printf " (goal <= 1.0: %s)", (pr <= 1.0 ? "ok" : "MISS")
                    printf "   cpu/req %6.3fx", xr
                    if (ref == "haproxy") printf " (goal <= 0.9: %s)", (xr <= 0.9 ? "ok" : "MISS")
                    printf "\n"
                }'
        done
    done
    echo "(goals from docs/performance.md; with few/short rounds on a shared 2-core box they are indicative only)"
fi

echo
echo "raw wrk outputs, summary.tsv, rendered configs and logs: $RESULTS_DIR"
if ((ERRORS)); then
    echo
    echo "!!!!!!!! $ERRORS run(s) had errors (socket errors / non-2xx / wrk failure) — see above !!!!!!!!" >&2
    exit 2
fi
