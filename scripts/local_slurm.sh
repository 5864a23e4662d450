#!/usr/bin/env bash
# A one-node SLURM on 127.0.0.1, for the tests and for trying `python -m repro sweep --executor slurm`.
#
#   scripts/local_slurm.sh start    install slurm-wlm and munge when missing (apt-get, as root), write a
#                                   one-node slurm.conf into $LOCAL_SLURM_DIR, start munged, slurmctld and
#                                   slurmd there, wait until sinfo shows the node idle; prints
#                                   `export SLURM_CONF=...` on stdout:  eval "$(scripts/local_slurm.sh start)"
#   scripts/local_slurm.sh stop     cancel its jobs, stop the three daemons by the pids they wrote
#   scripts/local_slurm.sh status   the node as sinfo sees it
#
# Settings (environment): LOCAL_SLURM_DIR (default <tmp>/repro-local-slurm: config, state, spool, logs),
# LOCAL_SLURM_INSTALL=0 (never install, fail instead), LOCAL_SLURM_WAIT_S (default 60).
# No accounting database: sacct fails, squeue still shows every job (see repro/sweep/slurm.py).
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-${TMPDIR:-/tmp}/repro-local-slurm}
CONF=$DIR/slurm.conf
INSTALL=${LOCAL_SLURM_INSTALL:-1}
WAIT_S=${LOCAL_SLURM_WAIT_S:-60}
DAEMONS=(slurmd slurmctld munged)   # stop order
PACKAGES=(slurm-wlm munge)
export PATH=$PATH:/usr/sbin:/sbin

log() { echo "local_slurm: $*" >&2; }
die() { log "$*"; exit 1; }

pidfile() { echo "$DIR/run/$1.pid"; }

# the pid in $1's pid file, if that process is alive and is $1 (a recycled pid is not ours)
live_pid() {
    local f pid
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(tr -dc 0-9 < "$f")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$1" ]] || return 1
    echo "$pid"
}

install_missing() {
    local missing=()
    for b in slurmctld slurmd sbatch munged; do command -v "$b" >/dev/null 2>&1 || missing+=("$b"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $INSTALL == 1 ]] || die "${missing[*]} not found and LOCAL_SLURM_INSTALL=0; install ${PACKAGES[*]} (apt-get install ${PACKAGES[*]})"
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} not found and no apt-get here; install ${PACKAGES[*]} with your package manager"
    [[ $(id -u) == 0 ]] || die "${missing[*]} not found; installing ${PACKAGES[*]} needs root: sudo apt-get install ${PACKAGES[*]}"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}") >&2 \
        || die "apt-get could not install ${PACKAGES[*]}"
}

# a TCP port on 127.0.0.1 nobody listens on, from $1 upwards
free_port() {
    local p
    for ((p = $1; p < $1 + 200; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    die "no free TCP port in $1..$(($1 + 199))"
}

write_conf() {
    local user host cpus mem_mb ctld_port slurmd_port
    user=$(id -un)
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    ctld_port=$(free_port 16817)
    slurmd_port=$(free_port $((ctld_port + 1)))
    cat > "$CONF" <<EOF
ClusterName=repro-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    install -d -m 700 "$DIR/munge"
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$(pidfile munged)" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start; see $DIR/log/munged.log"
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n 1; }

start() {
    if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null; then
        log "already running in $DIR"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    install_missing
    stop_daemons
    rm -rf "$DIR"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
    write_conf
    export SLURM_CONF=$CONF
    start_munge
    slurmctld -f "$CONF" -c || { stop_daemons; die "slurmctld did not start; see $DIR/log/slurmctld.log"; }
    slurmd -f "$CONF" || { stop_daemons; die "slurmd did not start; see $DIR/log/slurmd.log"; }
    local waited=0 state=""
    while state=$(node_state); [[ $state != idle ]]; do
        if ((waited >= WAIT_S)); then
            log "the node is '${state:-not listed}' after ${WAIT_S}s, not idle; last log lines:"
            tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
            stop_daemons
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "node $(hostname -s) idle after ${waited}s; config $CONF, logs $DIR/log"
    echo "export SLURM_CONF=$CONF"
}

stop_daemons() {
    local d pid n
    for d in "${DAEMONS[@]}"; do
        pid=$(live_pid "$d") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((n = 0; n < 100; n++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$d (pid $pid) ignored SIGTERM for 10 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $d (pid $pid)"
    done
}

cancel_jobs() {
    live_pid slurmctld >/dev/null || return 0
    export SLURM_CONF=$CONF
    local ids n
    ids=$(squeue -h -o %i 2>/dev/null || true)
    [[ -z $ids ]] && return 0
    log "cancelling job(s) $(echo $ids)"
    scancel $ids 2>/dev/null || true
    for ((n = 0; n < 300; n++)); do
        [[ -z $(squeue -h -o %i 2>/dev/null || true) ]] && return 0
        sleep 0.1
    done
    log "job(s) $(squeue -h -o %i | tr '\n' ' ')still listed after 30 s"
}

case "${1:-}" in
    start) start ;;
    stop) cancel_jobs; stop_daemons ;;
    status) export SLURM_CONF=$CONF; sinfo -N ;;
    *) die "usage: $0 start|stop|status" ;;
esac
