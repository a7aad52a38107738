#!/usr/bin/env bash
# Idle-connection memory: canaryd vs HAProxy vs nginx, each proxying the same two nginx upstreams
# (the load benchmark's 90/10 split), holding N idle keep-alive client connections that have each
# carried one request. Prints RSS per connection = (RSS with N idle clients - RSS before) / N, for
# every proxy and for two client patterns that separate the upstream pool's share:
#   sequential  one request at a time: every proxy needs about one upstream connection
#   burst       all N requests sent before any response is read: as many upstream connections as
#               a proxy opens under that concurrency, then whatever its pool keeps idle
# The "upstream conns" column counts the proxy's established connections to the upstreams at the
# moment RSS is read (ss -p). RSS does not depend on CPU contention, so this is meaningful on a busy
# machine (unlike throughput).
#
# Usage:  benches/idle_memory.sh        (needs haproxy, nginx, python3; cargo build --release first)
#
# Environment (defaults in brackets):
#   N [10000]           idle client connections per measurement
#   MODES ["sequential burst"]
#   SETTLE [3]          seconds between the last response and reading RSS (allocators purge lazily)
#   CANARYD_BIN         [target/release/canaryd], relative to the repo root
#   CANARYD_VARIANTS    ["default"] space-separated NAME[:ITEM[,ITEM...]], one canaryd per variant;
#                       ITEM is VAR=VAL (environment), BIN=/path (another build) or
#                       TOML=key=value (a line added to [proxy]), e.g.
#                       CANARYD_VARIANTS="default sysalloc:BIN=/tmp/canaryd-glibc"
#   SKIP_PEERS=1        canaryd variants only (no HAProxy, no nginx proxy)
#   RESULTS_DIR         [a new /tmp dir]    BASE_PORT [18600]
# Exit status: 0 ok, 1 set-up failure or a failed client run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TPL=$HERE/idle
PATH=$PATH:/usr/sbin:/sbin

N=${N:-10000}
MODES=${MODES:-sequential burst}
SETTLE=${SETTLE:-3}
CANARYD_BIN=${CANARYD_BIN:-target/release/canaryd}
[[ $CANARYD_BIN == /* ]] || CANARYD_BIN=$ROOT/$CANARYD_BIN
CANARYD_VARIANTS=${CANARYD_VARIANTS:-default}
SKIP_PEERS=${SKIP_PEERS:-0}
BASE_PORT=${BASE_PORT:-18600}

die() { echo "idle_memory.sh: $*" >&2; exit 1; }

tools=(python3 curl nginx)
((SKIP_PEERS)) || tools+=(haproxy)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool (Debian: apt-get install -y haproxy nginx-light curl python3)"
done
[[ -x $CANARYD_BIN ]] || die "no canaryd at $CANARYD_BIN (cargo build --release first)"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer"

# Every proxy holds N client sockets plus its upstream sockets, the client holds N: raise the
# descriptor limit as far as the hard limit allows, and size the proxies' limits from it.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
ulimit -n "$hard"
# HAProxy refuses to start unless the limit covers 2 descriptors per `maxconn` (client and
# server side) plus about 220: with a low hard limit, N comes down to what HAProxy can hold.
N_NOTE=
if ((!SKIP_PEERS)); then
    n_fit=$(( ((hard - 300) / 2 - 100) / 250 * 250 ))
    if ((N > n_fit)); then
        N_NOTE=" (lowered from $N: the hard descriptor limit $hard lets HAProxy hold about $n_fit)"
        N=$n_fit
    fi
fi
((N >= 1 && hard >= N + 200)) || die "the hard descriptor limit ($hard) is too low for N=$N"
MAXCONN=$((N + 100))
CLK_NOTE="descriptor limit $hard, proxies' connection limit $MAXCONN"
[[ -n $N_NOTE ]] && echo "idle_memory.sh: N=$N$N_NOTE" >&2

if [[ -n ${RESULTS_DIR:-} ]]; then
    mkdir -p "$RESULTS_DIR"
    RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
else
    RESULTS_DIR=$(mktemp -d /tmp/canaryd-idle.XXXXXX)
fi

# Each mode gets fresh processes: an allocator keeps what one mode freed, which would hide in
# the next mode's baseline. So with several modes, run this script once per mode.
read -r -a mode_list <<<"$MODES"
if ((${#mode_list[@]} > 1)); then
    rc=0
    for mode in "${mode_list[@]}"; do
        MODES=$mode N=$N RESULTS_DIR=$RESULTS_DIR/$mode "$0" || rc=$?
        ((rc == 0)) || exit "$rc"
    done
    echo
    echo "== all modes (fresh processes per mode): RSS per idle connection, bytes; upstream connections"
    {
        head -1 "$RESULTS_DIR/${mode_list[0]}/summary.tsv"
        for mode in "${mode_list[@]}"; do tail -n +2 "$RESULTS_DIR/$mode/summary.tsv"; done
    } >"$RESULTS_DIR/summary.tsv"
    awk -F'\t' 'NR > 1 { printf "  %-10s %-22s %8s B/conn   upstream conns %5s\n", $1, $2, $7, $6 }' "$RESULTS_DIR/summary.tsv"
    echo "per-mode results: $RESULTS_DIR/<mode>/"
    exit 0
fi
RUN=$RESULTS_DIR/run
mkdir -p "$RUN"

# ---- process bookkeeping and cleanup ----------------------------------------------------------------
PIDS=()
PNAMES=()
CLIENT_PID=
cleanup() {
    local rc=$? pid kids=() alive _
    trap - EXIT INT TERM
    # (under set -e: a failed kill here would end the cleanup early)
    if [[ -n ${CLIENT_PID:-} ]]; then kill -TERM "$CLIENT_PID" 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do
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
    ((${#PIDS[@]})) && echo "idle_memory.sh: stopped ${#PIDS[@]} process(es) (${PNAMES[*]}); results in $RESULTS_DIR" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "idle_memory.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

start_proc() {   # NAME CMD...
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
alloc_port() {
    while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    REPLY=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}
render() {   # TEMPLATE OUT KEY=VALUE...
    local tpl=$1 out=$2 kv text; shift 2
    text=$(<"$tpl")
    for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
    [[ $text == *@[A-Z_]*@* ]] && die "unfilled placeholder in $tpl: $(grep -o '@[A-Z_]*@' <<<"$text" | sort -u | tr '\n' ' ')"
    printf '%s\n' "$text" >"$out"
}
wait_ready() {   # NAME URL
    local name=$1 url=$2 pid _
    pid=$(pid_of "$name")
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$RUN/$name.log" >&2; die "$name exited during start-up"; }
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    tail -n 20 "$RUN/$name.log" >&2
    die "$name did not answer $url within 15s"
}

# RSS in KiB of a process and its children (nginx: master + workers).
rss_kib() {
    local pid=$1 p total=0 v
    for p in "$pid" $(pgrep -P "$pid" || true); do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
# established TCP connections from a proxy (PID and its children) to the upstream ports
upstream_conns() {   # PID
    local pids
    pids=$(printf 'pid=%s,|' "$1" $(pgrep -P "$1" || true))
    ss -Htnp state established "( dport = :$PRIMARY_PORT or dport = :$CANARY_PORT )" 2>/dev/null |
        grep -cE "${pids%|}" || true
}

# ---- upstreams --------------------------------------------------------------------------------------
alloc_port; PRIMARY_PORT=$REPLY
alloc_port; CANARY_PORT=$REPLY
mkdir -p "$RUN/upstream"
# The upstreams hold every proxy's upstream connections at once (a burst opens thousands)
render "$TPL/nginx-upstream.conf.tmpl" "$RUN/upstream/nginx.conf" PREFIX="$RUN/upstream" \
    PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" MAXCONN="$((hard - 300))"
start_proc upstream nginx -p "$RUN/upstream" -e "$RUN/upstream/error.log" -c "$RUN/upstream/nginx.conf"
wait_ready upstream "http://127.0.0.1:$PRIMARY_PORT/"

# ---- proxies ----------------------------------------------------------------------------------------
TARGETS=()
declare -A PORT
if ((!SKIP_PEERS)); then
    alloc_port; PORT[haproxy]=$REPLY
    mkdir -p "$RUN/haproxy"
    render "$TPL/haproxy.cfg.tmpl" "$RUN/haproxy/haproxy.cfg" PREFIX="$RUN/haproxy" MAXCONN="$MAXCONN" ULIMIT="$hard" \
        PROXY_PORT="${PORT[haproxy]}" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT"
    start_proc haproxy haproxy -db -f "$RUN/haproxy/haproxy.cfg"
    TARGETS+=(haproxy)

    alloc_port; PORT[nginx]=$REPLY
    mkdir -p "$RUN/nginx-proxy"
    render "$TPL/nginx-proxy.conf.tmpl" "$RUN/nginx-proxy/nginx.conf" PREFIX="$RUN/nginx-proxy" \
        MAXCONN="$((hard - 300))" PROXY_PORT="${PORT[nginx]}" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT"
    start_proc nginx nginx -p "$RUN/nginx-proxy" -e "$RUN/nginx-proxy/error.log" -c "$RUN/nginx-proxy/nginx.conf"
    TARGETS+=(nginx)
fi

CANARYD_TARGETS=()
read -r -a variants <<<"$CANARYD_VARIANTS"
for v in "${variants[@]}"; do
    vname=${v%%:*}
    items=()
    [[ $v == *:* ]] && IFS=, read -r -a items <<<"${v#*:}"
    venv=() vbin=$CANARYD_BIN vtoml=
    for kv in "${items[@]}"; do
        case $kv in
            BIN=*) vbin=${kv#BIN=} ;;
            TOML=*) vtoml+="${kv#TOML=}"$'\n' ;;
            *) venv+=("$kv") ;;
        esac
    done
    if ((${#variants[@]} == 1)) && [[ $vname == default ]]; then t=canaryd; else t=canaryd-$vname; fi
    [[ -x $vbin ]] || die "variant $vname: no executable canaryd at $vbin"
    alloc_port; PORT[$t]=$REPLY
    alloc_port; admin=$REPLY
    mkdir -p "$RUN/$t"
    render "$TPL/canaryd.toml.tmpl" "$RUN/$t/canaryd.toml" PREFIX="$RUN/$t" PROXY_PORT="${PORT[$t]}" \
        ADMIN_PORT="$admin" PRIMARY_PORT="$PRIMARY_PORT" CANARY_PORT="$CANARY_PORT" \
        MAXCONN="$MAXCONN" EXTRA_PROXY="$vtoml"
    printf '%s\n' "${venv[@]}" "bin=$vbin" | sed '/^$/d' >"$RUN/$t/variant"
    start_proc "$t" env "${venv[@]}" "$vbin" run -c "$RUN/$t/canaryd.toml"
    TARGETS+=("$t")
    CANARYD_TARGETS+=("$t")
done

for t in "${TARGETS[@]}"; do wait_ready "$t" "http://127.0.0.1:${PORT[$t]}/"; done

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
    ((SKIP_PEERS)) || echo "haproxy: $(haproxy -v | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "python: $(python3 --version)"
    echo "params: N=$N$N_NOTE MODES=$MODES SETTLE=$SETTLE; $CLK_NOTE"
    echo "canaryd variants: ${CANARYD_VARIANTS}"
} >"$RESULTS_DIR/meta.txt"
sed 's/^/  /' "$RESULTS_DIR/meta.txt"

# ---- measuring --------------------------------------------------------------------------------------
SUMMARY=$RESULTS_DIR/summary.tsv
printf 'mode\ttarget\trss_before_kib\trss_idle_kib\trss_after_close_kib\tupstream_conns\tbytes_per_conn\n' >"$SUMMARY"
measure() {   # TARGET MODE
    local t=$1 mode=$2 pid before idle after up line fifo
    pid=$(pid_of "$t")
    # a few requests first, so that one-time start-up allocations are in the baseline
    for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:${PORT[$t]}/"; done
    sleep 1
    before=$(rss_kib "$pid")
    fifo=$RUN/client-$t-$mode.in
    rm -f "$fifo"; mkfifo "$fifo"
    python3 "$TPL/idle_client.py" 127.0.0.1 "${PORT[$t]}" "$N" "$mode" <"$fifo" >"$RUN/client-$t-$mode.out" 2>&1 &
    CLIENT_PID=$!
    exec 7>"$fifo"   # the client holds its connections until this closes
    line=
    for _ in $(seq 1200); do
        line=$(head -1 "$RUN/client-$t-$mode.out" 2>/dev/null || true)
        [[ $line == ready* ]] && break
        kill -0 "$CLIENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $line != ready* ]]; then
        exec 7>&-
        cat "$RUN/client-$t-$mode.out" >&2
        die "client against $t ($mode) did not get its $N responses"
    fi
    sleep "$SETTLE"
    idle=$(rss_kib "$pid")
    up=$(upstream_conns "$pid")
    exec 7>&-
    wait "$CLIENT_PID" || true
    CLIENT_PID=
    sleep "$SETTLE"
    after=$(rss_kib "$pid")
    local per
    per=$(awk -v a="$idle" -v b="$before" -v n="$N" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$t" "$before" "$idle" "$after" "$up" "$per" >>"$SUMMARY"
    printf '  %-10s %-22s RSS %8s -> %8s KiB (after close %8s)  upstream conns %5s  %7s B/conn\n' \
        "$mode" "$t" "$before" "$idle" "$after" "$up" "$per"
}

echo "== measuring ($N idle connections each)"
for mode in $MODES; do
    for t in "${TARGETS[@]}"; do measure "$t" "$mode"; done
done

echo
echo "== RSS per idle connection, bytes ((RSS idle - RSS before) / $N)"
printf '%-22s' target
for mode in $MODES; do printf ' %12s %9s' "$mode" "upstreams"; done
echo
for t in "${TARGETS[@]}"; do
    printf '%-22s' "$t"
    for mode in $MODES; do
        awk -F'\t' -v t="$t" -v m="$mode" '$1 == m && $2 == t { printf " %12s %9s", $7, $6 }' "$SUMMARY"
    done
    echo
done
if ((!SKIP_PEERS)); then
    echo
    for c in "${CANARYD_TARGETS[@]}"; do
        for mode in $MODES; do
            awk -F'\t' -v c="$c" -v m="$mode" '
                $1 == m { v[$2] = $7 }
                END {
                    h = 0; g = 0
                    if (v["haproxy"] > 0) h = v[c] / v["haproxy"]
                    if (v["nginx"] > 0) g = v[c] / v["nginx"]
                    goal = "MISS"
                    if (v[c] <= 8192) goal = "ok"
                    printf "%-22s %-10s  vs haproxy %6.2fx   vs nginx %6.2fx   (goal: <= 8192 B/conn: %s)\n", c, m, h, g, goal
                }' "$SUMMARY"
        done
    done
fi
echo
echo "summary.tsv, rendered configs and logs: $RESULTS_DIR"
