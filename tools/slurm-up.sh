#!/bin/bash
# Starts a private one-node Slurm on this machine, for the tests (tests/slurm) and for trying
# the job scripts by hand:
#   bash tools/slurm-up.sh DIR      then   export SLURM_CONF=DIR/slurm.conf; sbatch jobs/demo.sh
#   bash tools/slurm-down.sh DIR    stops it (by the pids in DIR)
# Installs Debian's slurm-wlm and munge when missing (root), writes DIR/slurm.conf for this
# machine (CPUs from nproc, RealMemory from /proc/meminfo; state, spool, logs and pid files
# under DIR; ports chosen free), and starts munged (its own key and socket in DIR), slurmctld and
# slurmd (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: no cgroups needed). Nothing
# outside DIR is written, except the packages. DIR/env holds `export SLURM_CONF=...`.
#
# Exit status: 0 running (DIR/status = "ok"); 77 this machine cannot run Slurm, the reason on
# stderr and in DIR/status ("skip: <reason>"), nothing left running; 1 wrong usage.
set -uo pipefail
dir=${1:?usage: slurm-up.sh DIR}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || exit 1
rm -f "$dir/status"
bash "$(dirname "$0")/slurm-down.sh" "$dir" # a previous instance in DIR (a run that was cut short)
log() { echo "slurm-up: $*" >&2; }
# the last line a daemon wrote: its log file, else what it printed when starting
last_words() { tail -n 1 "$dir/log/$1.log" 2>/dev/null | grep . || tail -n 1 "$dir/log/start.log" 2>/dev/null; }
skip() {
  log "Slurm cannot run here: $*"
  echo "skip: $*" >"$dir/status"
  bash "$(dirname "$0")/slurm-down.sh" "$dir" >/dev/null 2>&1
  exit 77
}

# ---- packages ----
need=()
for c in sbatch srun scontrol slurmctld slurmd munged; do
  command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null 2>&1 || need+=("$c")
done
export PATH=$PATH:/usr/sbin
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || skip "${need[*]} missing and not root (apt-get install slurm-wlm munge)"
  log "installing slurm-wlm munge (missing: ${need[*]})"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq --no-install-recommends slurm-wlm munge >"$dir/apt.log" 2>&1 ||
    { apt-get update -qq >>"$dir/apt.log" 2>&1 &&
      apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$dir/apt.log" 2>&1; }; } ||
    skip "apt-get install slurm-wlm munge failed (see $dir/apt.log)"
fi
for c in sbatch srun scontrol slurmctld slurmd munged; do
  command -v "$c" >/dev/null 2>&1 || skip "$c not found after installing slurm-wlm and munge"
done
plugins=$(dirname "$(find /usr/lib* -name mpi_pmix.so -path '*slurm*' 2>/dev/null | head -1)")
[ -f "$plugins/mpi_pmix.so" ] || skip "Slurm's PMIx plugin (mpi_pmix.so) not found: srun cannot start Open MPI"

# ---- configuration ----
mkdir -p "$dir"/{state,spool,munge,log}
chmod 700 "$dir/munge"
# free TCP ports for slurmctld and slurmd
read -r ctl_port d_port < <(python3 - <<'PY'
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))
PY
) || skip "cannot find free TCP ports"
host=$(hostname -s)
cpus=$(nproc)
mem_mib=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.95 }' /proc/meminfo)
cat >"$dir/slurm.conf" <<EOF
# A one-node Slurm for mpiquant's tests (tools/slurm-up.sh); everything under $dir.
ClusterName=mqtest
SlurmctldHost=$host
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also holds a requeued job back; 120 s by default, 10 s here
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PluginDir=$plugins
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# no default plugin: the job scripts must choose it (srun --mpi=pmix)
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
SchedulerParameters=sched_interval=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env"
export SLURM_CONF=$dir/slurm.conf

# ---- daemons ----
key=$dir/munge/munge.key
[ -f "$key" ] || { dd if=/dev/urandom of="$key" bs=1024 count=1 status=none && chmod 400 "$key"; } ||
  skip "cannot write a munge key"
munged --force --socket="$dir/munge/munge.socket" --key-file="$key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" >>"$dir/log/start.log" 2>&1 ||
  skip "munged did not start ($(last_words munged))"
slurmctld -c -f "$dir/slurm.conf" >>"$dir/log/start.log" 2>&1 ||
  skip "slurmctld did not start ($(last_words slurmctld))"
slurmd -f "$dir/slurm.conf" >>"$dir/log/start.log" 2>&1 ||
  skip "slurmd did not start ($(last_words slurmd))"

# the node must come up idle
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1)
  case "$state" in idle|idle~|mix|alloc) break ;; esac
  sleep 0.5
done
case "$state" in
  idle*|mix|alloc) ;;
  *) skip "the node did not come up (state '${state:-none}'; $(last_words slurmd))" ;;
esac
echo ok >"$dir/status"
log "running: $cpus CPUs, ${mem_mib} MiB, slurmctld port $ctl_port; export SLURM_CONF=$dir/slurm.conf"
