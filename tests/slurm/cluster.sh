#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, from Debian's packages (slurm-wlm, munge):
#   tests/slurm/cluster.sh start DIR   # writes DIR/slurm.conf for this host, starts munged, slurmctld and
#                                      # slurmd, waits until sinfo shows the node idle; prints SLURM_CONF=...
#   tests/slurm/cluster.sh stop DIR    # stops them (also after a failed start)
# Everything lives under DIR (state, spool, logs, pids); /etc is not touched: clients find the cluster
# through SLURM_CONF, jobs through slurmd (configless mode). One node with this machine's real CPUs and memory, one partition "local". No job
# accounting database: Snakemake's Slurm executor then queries job status with squeue, which the
# plugin documents as the alternative when MinJobAge keeps finished jobs listed (here 1 hour).
# Needs root (slurmd starts jobs as the submitting user) and the packages:
#   apt-get install -y slurm-wlm munge
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")
host=$(hostname -s)

stop() {
    for daemon in slurmd slurmctld munged; do
        if [ -f "$dir/$daemon.pid" ]; then
            pid=$(cat "$dir/$daemon.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$dir/$daemon.pid"
        fi
    done
}

start() {
    for tool in munged slurmctld slurmd sinfo sbatch; do
        command -v "$tool" >/dev/null || { echo "cluster.sh: $tool missing: apt-get install -y slurm-wlm munge" >&2; exit 2; }
    done
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    chmod 700 "$dir/munge"
    # munge on its default socket (slurmd reads it before it has a configuration): the machine's munged
    # if one answers, else one of our own with a fresh key, stopped with the cluster
    if ! { munge -n </dev/null | unmunge >/dev/null; } 2>/dev/null; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
        chmod 400 "$dir/munge/munge.key"
        mkdir -p /run/munge
        munged --force --key-file "$dir/munge/munge.key" --pid-file "$dir/munged.pid" \
            --log-file "$dir/log/munged.log" --seed-file "$dir/munge/seed"
    fi
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)  # MB, below what slurmd measures
    cat > "$dir/slurm.conf" <<CONF
ClusterName=divdistill-test
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldParameters=enable_configless
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    # configless: slurmd fetches the configuration from slurmctld and hands its cached copy to every job
    # (SLURM_CONF inside jobs), so the srun that Snakemake's job step runs finds the cluster
    slurmd --conf-server "$host:16817"
    for _ in $(seq 120); do
        if sinfo -h -N -o "%T" 2>/dev/null | grep -qx idle; then
            echo "SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "cluster.sh: the node did not become idle in 60 s:" >&2
    sinfo -N -l >&2 || true
    tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop
    exit 1
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
