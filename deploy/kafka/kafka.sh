#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft mode: one process is broker + controller)
# for development and CI. There is no Debian/PyPI package of the broker, so the
# real broker jars are fetched from Maven Central with Maven (see pom.xml) into
# a git-ignored cache folder. See README.md next to this file.
#
# KAFKA_MODE=sasl adds a SASL listener, KAFKA_MODE=ssl adds a TLS listener and a
# mutual-TLS one (a CA and certificates made at start), KAFKA_MODE=cluster3 runs
# three nodes (for fault tests); the default is the single node described above.
#
# Usage: kafka.sh {fetch|start|stop|restart|status|reset|tool|topics|produce|consume|bootstrap|logs} [args]
#        kafka.sh {start-node|stop-node} N      (KAFKA_MODE=cluster3)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---- knobs (environment) ---------------------------------------------------
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_HOST=127.0.0.1          # loopback only: nothing here should be reachable from outside
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HOME_DIR="${KAFKA_HOME_DIR:-$SCRIPT_DIR/.cache}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"                 # extra broker JVM flags
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"     # seconds until the broker must answer
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"       # seconds of SIGTERM grace before SIGKILL
KAFKA_MAVEN_ARGS="${KAFKA_MAVEN_ARGS:-}"             # e.g. "-o" to fetch from ~/.m2 only
KAFKA_MODE="${KAFKA_MODE:-single}"                   # single | sasl | ssl | cluster3
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"           # sasl: the SASL_PLAINTEXT listener
KAFKA_SASL_USERS="${KAFKA_SASL_USERS:-}"             # sasl: name:password[,name:password...]
KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-9095}"             # ssl: TLS listener; KAFKA_SSL_PORT+1 requires a client certificate

# Absolute paths, so every command works from any working directory.
case "$KAFKA_HOME_DIR" in /*) ;; *) KAFKA_HOME_DIR="$PWD/$KAFKA_HOME_DIR" ;; esac
KAFKA_LIBS_DIR="${KAFKA_LIBS_DIR:-$KAFKA_HOME_DIR/libs}"   # another instance can share the jars
case "$KAFKA_LIBS_DIR" in /*) ;; *) KAFKA_LIBS_DIR="$PWD/$KAFKA_LIBS_DIR" ;; esac

LIBS="$KAFKA_LIBS_DIR"
MARKER="$LIBS/.fetched"
DATA="$KAFKA_HOME_DIR/data"
CONF="$KAFKA_HOME_DIR/server.properties"
PROBE_CONF="$KAFKA_HOME_DIR/probe.properties"
PIDFILE="$KAFKA_HOME_DIR/kafka.pid"
LOGFILE="$KAFKA_HOME_DIR/kafka.log"
LOCKFILE="$KAFKA_HOME_DIR/.lock"
BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
NODE_HOME="$KAFKA_HOME_DIR"

# Short-lived tool JVMs: small heap, serial GC and C1 only start noticeably
# faster on a 2-core machine; logging at WARN on stderr (log4j2-tools.xml).
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
               "-Dlog4j2.configurationFile=$SCRIPT_DIR/log4j2-tools.xml")

# Progress goes to stderr so that stdout of `tool`/`status`/`bootstrap` stays clean.
log() { printf '[kafka.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Serialise fetch/start/stop/reset (e.g. two `make` targets starting Kafka at
# once). fd 9 must NOT leak into the broker, or it would hold the lock forever.
lock() {
    mkdir -p "$KAFKA_HOME_DIR"
    exec 9>"$LOCKFILE"
    flock -w 600 9 || die "could not lock $LOCKFILE"
}
unlock() { exec 9>&-; }

# ---- fetch -------------------------------------------------------------------
# The marker records the version and the POM's hash, so changing either
# triggers a new fetch while an unchanged setup costs nothing.
marker_text() {
    printf 'kafka=%s pom=%s\n' "$KAFKA_VERSION" "$(sha256sum "$SCRIPT_DIR/pom.xml" | cut -d' ' -f1)"
}
is_fetched() { [[ -f "$MARKER" && "$(cat "$MARKER")" == "$(marker_text)" ]]; }

do_fetch() {
    if is_fetched; then
        log "Kafka $KAFKA_VERSION jars already in $LIBS"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (Maven is needed to fetch the broker jars)"
    command -v java >/dev/null || die "java not found"
    # Swapping jars under a running JVM would break it in odd ways.
    if broker_pid >/dev/null; then
        die "broker is running with other jars; run '$0 stop' first"
    fi
    log "fetching Kafka $KAFKA_VERSION (broker, tools, log4j2) from Maven Central..."
    local t0=$SECONDS tmp="$LIBS.tmp"
    rm -rf "$tmp"
    mkdir -p "$KAFKA_HOME_DIR"
    # Maven's full output goes to fetch.log and is shown only on failure
    # (Maven 3.8's -q still prints stray colour codes).
    # shellcheck disable=SC2086  # KAFKA_MAVEN_ARGS is a list of flags
    if ! mvn -B -ntp -Dstyle.color=never $KAFKA_MAVEN_ARGS \
        -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$KAFKA_HOME_DIR/fetch.log" 2>&1; then
        grep -E '\[(ERROR|WARNING)\]' "$KAFKA_HOME_DIR/fetch.log" | tail -n 30 >&2 || tail -n 30 "$KAFKA_HOME_DIR/fetch.log" >&2
        die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (full log: $KAFKA_HOME_DIR/fetch.log)"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
    marker_text >"$tmp/.fetched"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0))s"
}

# ---- helpers -----------------------------------------------------------------
java_tool() { java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" "$@"; }

# Prints the broker pid if our broker process is alive. The cmdline check
# guards against a stale pid file whose pid was reused by something else, and
# treats a zombie (empty cmdline) as dead.
broker_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid cmd
    pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *kafka.Kafka* ]] || return 1
    echo "$pid"
}

# Cheap check (no JVM): is something listening on the port?
port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$KAFKA_HOST/$1" 2>/dev/null; }

# Real check: does the broker answer a metadata request? Uses Kafka's own
# TopicCommand so this script needs no Python venv. Short client timeouts so a
# broker that is still starting fails fast and we retry.
answers() {
    local limit="${1:-30}"
    is_fetched || return 1
    port_open "$KAFKA_PORT" || return 1
    if [[ ! -f "$PROBE_CONF" ]]; then
        # temp + rename: a concurrent `status` never reads a half-written file
        printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$PROBE_CONF.$$"
        mv -f "$PROBE_CONF.$$" "$PROBE_CONF"
    fi
    timeout "$limit" java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BOOTSTRAP" --command-config "$PROBE_CONF" --list >/dev/null 2>&1 9>&-
}

write_config() {
    mkdir -p "$DATA"
    # Rewritten on every start so KAFKA_PORT / KAFKA_CONTROLLER_PORT changes apply.
    # Static controller.quorum.voters (not the dynamic bootstrap-servers quorum)
    # so the stored metadata does not pin the controller port.
    cat >"$CONF" <<EOF
# Generated by deploy/kafka/kafka.sh -- edits are overwritten on each start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
# Single node: every internal topic must live with one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions (defaults are 50): the first consumer group on a
# 2-core machine then comes up in well under a second.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1
# Consumers in tests should not wait 3 s for a rebalance.
group.initial.rebalance.delay.ms=0
EOF
    mode_config >>"$CONF"
}

format_if_needed() {
    if [[ -f "$DATA/meta.properties" ]]; then
        log "storage already formatted ($(grep -m1 '^cluster.id=' "$DATA/meta.properties" || true))"
        return 0
    fi
    local cid="${KAFKA_CLUSTER_ID:-}" scram=() name password
    if [[ -z "$cid" && "$KAFKA_MODE" == cluster3 ]]; then  # the three nodes share one cluster id
        [[ -s "$KAFKA_HOME_DIR/cluster.id" ]] \
            || java_tool kafka.tools.StorageTool random-uuid 9>&- >"$KAFKA_HOME_DIR/cluster.id"
        cid="$(cat "$KAFKA_HOME_DIR/cluster.id")"
    fi
    [[ -n "$cid" ]] || cid="$(java_tool kafka.tools.StorageTool random-uuid 9>&-)"
    if [[ "$KAFKA_MODE" == sasl ]]; then  # SCRAM credentials live in the cluster metadata
        while read -r name password; do
            scram+=(--add-scram "SCRAM-SHA-256=[name=$name,password=$password]"
                    --add-scram "SCRAM-SHA-512=[name=$name,password=$password]")
        done < <(sasl_users)
    fi
    log "formatting storage in $DATA (cluster.id=$cid)"
    java_tool kafka.tools.StorageTool format --cluster-id="$cid" -c "$CONF" ${scram[@]+"${scram[@]}"} 9>&- >&2 \
        || die "storage format failed"
}

# ---- modes -------------------------------------------------------------------
# Mode settings are appended to server.properties; later keys override earlier
# ones, so the single-node file above stays exactly as it is.

# "name password" per line from KAFKA_SASL_USERS. Only plain characters, as the
# names and passwords go into JAAS and StorageTool syntax unquoted.
sasl_users() {
    local pair pairs
    IFS=',' read -r -a pairs <<<"$KAFKA_SASL_USERS"
    for pair in "${pairs[@]}"; do
        [[ "$pair" =~ ^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$ ]] \
            || die "KAFKA_SASL_USERS: '${pair%%:*}:...' must be name:password of letters, digits, '.', '_', '-'"
        echo "${pair%%:*} ${pair#*:}"
    done
}

check_mode() {
    case "$KAFKA_MODE" in
        single | cluster3) ;;
        ssl) command -v openssl >/dev/null || die "KAFKA_MODE=ssl needs openssl to make its certificates" ;;
        sasl)
            [[ -n "$KAFKA_SASL_USERS" ]] || die "KAFKA_MODE=sasl needs KAFKA_SASL_USERS=name:password[,...]"
            sasl_users >/dev/null
            ;;
        *) die "KAFKA_MODE must be single, sasl, ssl or cluster3, got '$KAFKA_MODE'" ;;
    esac
}

mode_config() {
    local plain="" name password
    case "$KAFKA_MODE" in
    sasl)
        while read -r name password; do plain+=" user_$name=\"$password\""; done < <(sasl_users)
        cat <<EOF

# KAFKA_MODE=sasl: SASL_PLAINTEXT with PLAIN and SCRAM on $KAFKA_HOST:$KAFKA_SASL_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
        chmod 600 "$CONF"  # it holds the PLAIN passwords
        ;;
    ssl)
        make_certificates
        cat <<EOF

# KAFKA_MODE=ssl: TLS on $KAFKA_HOST:$KAFKA_SSL_PORT, mutual TLS (client certificate required) on
# $KAFKA_HOST:$((KAFKA_SSL_PORT + 1)); both trust only the CA in $TLS_DIR
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT,MTLS://$KAFKA_HOST:$((KAFKA_SSL_PORT + 1)),CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT,MTLS://$KAFKA_HOST:$((KAFKA_SSL_PORT + 1))
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,CONTROLLER:PLAINTEXT
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.mtls.ssl.client.auth=required
EOF
        ;;
    cluster3)
        cat <<EOF

# KAFKA_MODE=cluster3: node $NODE_ID of three, every topic on three replicas
node.id=$NODE_ID
controller.quorum.voters=$(cluster_list "%s@$KAFKA_HOST:%s" "$BASE_CONTROLLER_PORT")
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
EOF
        ;;
    esac
}

# KAFKA_MODE=ssl: a throw-away CA, a broker certificate for 127.0.0.1/localhost and a
# client certificate, all signed by it, made once per KAFKA_HOME_DIR (`reset` keeps
# them; delete $TLS_DIR for new ones). Clients use ca.pem, client.pem, client.key.
TLS_DIR="$KAFKA_HOME_DIR/tls"
make_certificates() {
    [[ -s "$TLS_DIR/broker-keystore.pem" ]] && return 0
    log "making a CA and certificates in $TLS_DIR"
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        sign() {  # name, subject, extensions file or ""
            openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -out "$1.pem" ${3:+-extfile "$3"} 2>/dev/null
        }
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
            -subj "/CN=anomaly-monitor test CA" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
        sign broker "/CN=localhost" broker.ext
        sign client "/CN=anomaly-monitor"
        # Kafka's PEM key store: the unencrypted PKCS#8 key, then the certificate.
        openssl pkcs8 -topk8 -nocrypt -in broker.key | cat - broker.pem >broker-keystore.pem
        chmod 600 ./*.key broker-keystore.pem
    ) || die "could not make the TLS certificates in $TLS_DIR"
}

# cluster3: node N listens on KAFKA_PORT+N-1 (controller KAFKA_CONTROLLER_PORT+N-1)
# and keeps data, config, pid and log in $KAFKA_HOME_DIR/node-N.
BASE_PORT=$KAFKA_PORT
BASE_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
NODE_ID=1
use_node() {
    [[ "$1" =~ ^[123]$ ]] || die "node must be 1, 2 or 3, got '$1'"
    NODE_ID=$1
    NODE_HOME="$KAFKA_HOME_DIR/node-$1"
    KAFKA_PORT=$((BASE_PORT + $1 - 1))
    KAFKA_CONTROLLER_PORT=$((BASE_CONTROLLER_PORT + $1 - 1))
    DATA="$NODE_HOME/data"
    CONF="$NODE_HOME/server.properties"
    PROBE_CONF="$NODE_HOME/probe.properties"
    PIDFILE="$NODE_HOME/kafka.pid"
    LOGFILE="$NODE_HOME/kafka.log"
    BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
}

# The three nodes as FORMAT (filled with node id and port) joined by commas.
cluster_list() {
    local n out=""
    for n in 1 2 3; do
        # shellcheck disable=SC2059  # the format is ours
        out+="${out:+,}$(printf "$1" "$n" "$(($2 + n - 1))")"
    done
    echo "$out"
}

launch() {
    local heap extra
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    read -r -a extra <<<"$KAFKA_JVM_OPTS"
    # Keep the previous log for post-mortems.
    [[ -f "$LOGFILE" ]] && mv -f "$LOGFILE" "$LOGFILE.1"
    log "starting broker on $BOOTSTRAP (controller $KAFKA_HOST:$KAFKA_CONTROLLER_PORT), log: $LOGFILE"
    # setsid: own session, so Ctrl-C / the caller's process group don't hit it;
    # nohup: survives the terminal going away. The inner bash writes its own
    # pid and then execs java, so the pid file holds the JVM's pid exactly.
    # shellcheck disable=SC2016  # $$ and $@ are meant for the inner bash
    nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java "${heap[@]}" \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$SCRIPT_DIR/log4j2-broker.xml" \
        "-Dkafka.logs.dir=$NODE_HOME" \
        ${extra[@]+"${extra[@]}"} \
        -cp "$LIBS/*" kafka.Kafka "$CONF" \
        </dev/null >"$LOGFILE" 2>&1 9>&- &
}

wait_ready() {
    local t0=$SECONDS deadline=$((SECONDS + KAFKA_START_TIMEOUT)) pid="" left
    while :; do
        if pid="$(broker_pid)"; then
            left=$((deadline - SECONDS)); ((left > 1)) || left=1; ((left < 30)) || left=30
            if answers "$left"; then
                log "broker ready on $BOOTSTRAP (pid $pid) after $((SECONDS - t0))s"
                return 0
            fi
        elif { [[ -s "$PIDFILE" ]] && ! broker_pid >/dev/null; } || ((SECONDS - t0 > 5)); then
            # The launcher writes the pid file first thing; once it exists (or
            # after 5 s without it) a missing process means the JVM died. The
            # second look closes a race: the file may appear between the two.
            log "broker process exited during startup; last lines of $LOGFILE:"
            tail -n 40 "$LOGFILE" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "broker did not answer within ${KAFKA_START_TIMEOUT}s; last lines of $LOGFILE:"
            tail -n 40 "$LOGFILE" >&2 || true
            log "(process ${pid:-?} left running; '$0 stop' stops it)"
            exit 1
        fi
        sleep 1
    done
}

# ---- commands ----------------------------------------------------------------
do_start() {
    do_fetch
    local pid
    if pid="$(broker_pid)"; then
        if answers; then
            log "already running on $BOOTSTRAP (pid $pid)"
            return 0
        fi
        log "broker process $pid is up but not answering yet; waiting"
        wait_ready
        return 0
    fi
    start_node
    wait_ready
}

# Configure, format and launch the broker, without waiting for it.
start_node() {
    rm -f "$PIDFILE"
    # Another broker (or anything else) on our ports would make ours fail with
    # a confusing bind error, or worse, make the readiness probe hit it.
    if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
        die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is already in use by another process; set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
    fi
    if [[ "$KAFKA_MODE" == sasl ]] && port_open "$KAFKA_SASL_PORT"; then
        die "port $KAFKA_SASL_PORT is already in use by another process; set KAFKA_SASL_PORT"
    fi
    if [[ "$KAFKA_MODE" == ssl ]] && { port_open "$KAFKA_SSL_PORT" || port_open $((KAFKA_SSL_PORT + 1)); }; then
        die "port $KAFKA_SSL_PORT or $((KAFKA_SSL_PORT + 1)) is already in use by another process; set KAFKA_SSL_PORT"
    fi
    write_config
    format_if_needed
    launch
}

do_stop() {
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while broker_pid >/dev/null; do
        if ((SECONDS >= deadline)); then
            log "still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.5
    done
    rm -f "$PIDFILE"
    log "stopped"
}

# Exit codes follow LSB init scripts: 0 running and answering,
# 1 process alive but not answering (starting up or hung), 3 stopped.
do_status() {
    local pid
    if pid="$(broker_pid)"; then
        if answers; then
            echo "running on $BOOTSTRAP (pid $pid)"
            return 0
        fi
        echo "not answering on $BOOTSTRAP (pid $pid alive; starting up or hung)"
        return 1
    fi
    echo "stopped"
    return 3
}

do_reset() {
    do_stop
    rm -rf "$DATA" "$CONF" "$PROBE_CONF"
    log "data removed ($DATA); jars kept"
}

# cluster3: the node commands run for each node in turn, except `start`, which
# launches all three before waiting: no node answers until a majority of the
# controllers is up.
do_cluster() {
    local n rc=0
    case "$1" in
        start)
            do_fetch
            for n in 1 2 3; do use_node "$n"; broker_pid >/dev/null || start_node; done
            for n in 1 2 3; do use_node "$n"; wait_ready; done
            ;;
        stop | reset) for n in 1 2 3; do use_node "$n"; "do_$1"; done ;;
        status)
            for n in 1 2 3; do use_node "$n"; printf 'node %s: ' "$n"; do_status || rc=$?; done
            return "$rc"
            ;;
        logs) for n in 1 2 3; do use_node "$n"; echo "== node $n: $LOGFILE"; tail -n "${2:-100}" "$LOGFILE"; done ;;
    esac
}

usage() {
    cat <<EOF
Usage: $0 COMMAND [args]

  fetch              download Kafka $KAFKA_VERSION jars with Maven (skipped if present)
  start              fetch, format storage once, start the broker, wait until it answers
  stop               stop the broker (SIGTERM, SIGKILL after ${KAFKA_STOP_TIMEOUT}s)
  restart            stop + start
  status             exit 0 "running on $BOOTSTRAP", 1 alive but not answering, 3 stopped
  reset              stop and delete all topic data (jars kept)
  tool CLASS [ARGS]  run any Java class with Kafka's classpath, e.g.
                     $0 tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server $BOOTSTRAP --topic t
  topics [ARGS]      TopicCommand against $BOOTSTRAP (e.g. topics --list)
  produce TOPIC [ARGS]   ConsoleProducer: one message per stdin line
  consume TOPIC [ARGS]   ConsoleConsumer from the beginning (add --max-messages N)
  bootstrap          print the bootstrap address ($BOOTSTRAP)
  logs [N]           print the last N (default 100) broker log lines

  start-node N, stop-node N   KAFKA_MODE=cluster3: start or stop node N (1-3) alone

Environment: KAFKA_VERSION KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_HOME_DIR KAFKA_HEAP_OPTS
             KAFKA_JVM_OPTS KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT KAFKA_CLUSTER_ID KAFKA_MAVEN_ARGS
             KAFKA_LIBS_DIR KAFKA_MODE (single|sasl|ssl|cluster3) KAFKA_SASL_PORT KAFKA_SASL_USERS KAFKA_SSL_PORT
EOF
}

# Tool commands: fetch under the lock if needed, then release it before exec
# so a long-running consumer does not block start/stop.
ensure_fetched() {
    if ! is_fetched; then
        lock
        do_fetch
        unlock
    fi
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in start | restart | start-node) check_mode ;; esac
if [[ "$KAFKA_MODE" == cluster3 ]]; then
    BOOTSTRAP="$(cluster_list "%.0s$KAFKA_HOST:%s" "$BASE_PORT")"
    case "$cmd" in
        start | stop | status | reset | logs) [[ "$cmd" == status || "$cmd" == logs ]] || lock; do_cluster "$cmd" "$@"; exit ;;
        restart) lock; do_cluster stop; do_cluster start; exit ;;
        start-node) lock; use_node "${1:-}"; do_start; exit ;;
        stop-node) lock; use_node "${1:-}"; do_stop; exit ;;
    esac
elif [[ "$cmd" == start-node || "$cmd" == stop-node ]]; then
    die "$cmd needs KAFKA_MODE=cluster3"
fi
case "$cmd" in
    fetch) lock; do_fetch ;;
    start) lock; do_start ;;
    stop) lock; do_stop ;;
    restart) lock; do_stop; do_start ;;
    status) do_status ;;
    reset) lock; do_reset ;;
    tool)
        [[ $# -ge 1 ]] || die "usage: $0 tool CLASS [ARGS...]"
        ensure_fetched
        exec java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" "$@"
        ;;
    topics)
        ensure_fetched
        exec java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "$BOOTSTRAP" "$@"
        ;;
    produce)
        [[ $# -ge 1 ]] || die "usage: $0 produce TOPIC [ARGS...]"
        ensure_fetched
        topic="$1"; shift
        exec java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" org.apache.kafka.tools.ConsoleProducer \
            --bootstrap-server "$BOOTSTRAP" --topic "$topic" "$@"
        ;;
    consume)
        [[ $# -ge 1 ]] || die "usage: $0 consume TOPIC [ARGS...]"
        ensure_fetched
        topic="$1"; shift
        exec java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" org.apache.kafka.tools.consumer.ConsoleConsumer \
            --bootstrap-server "$BOOTSTRAP" --topic "$topic" --from-beginning "$@"
        ;;
    bootstrap) echo "$BOOTSTRAP" ;;
    logs) tail -n "${1:-100}" "$LOGFILE" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) log "unknown command: $cmd"; usage >&2; exit 2 ;;
esac
