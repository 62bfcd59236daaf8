# shellcheck shell=bash
# Sourced by the job scripts (jobs/*.sh, jobs/quantize.sbatch), which first find the repository
# ($root; docs/SLURM.md "Submitting from any folder"): how to start mpiquant on the ranks we have.
#
#   mq_launch [-n N] PROGRAM [ARGS...]
#     Inside a Slurm allocation (SLURM_JOB_ID set and srun found; MQ_LAUNCHER=mpirun forces the
#     fallback): srun --mpi=${MQ_SRUN_MPI:-pmix} [-n N] [--cpus-per-task C] PROGRAM ARGS — every
#     task of the allocation unless -n N, a job step inside it. The MPI plugin is explicit:
#     Debian's Open MPI starts under srun only with PMIx, and a cluster's MpiDefault may be none.
#     Otherwise: mpirun --oversubscribe -np N (N: -n, else MQ_NP, else 2) on this machine.
#     The launcher runs in the background of the calling script: SIGTERM and SIGUSR1 sent to
#     the script (scancel, a walltime, `#SBATCH --signal=B:USR1@300`, kill) reach every rank as
#     SIGUSR1, on which `mpiquant quantize` stops after its current layer group with exit
#     status 5 (resumable). (srun itself kills the step on SIGTERM, and mpirun its ranks a
#     second after it, before a layer could finish.) Returns the launcher's exit status;
#     mq_signal is then TERM or USR1 when one of them came (jobs/quantize.sbatch requeues
#     itself only after SIGUSR1, the walltime warning; SIGTERM means stop).
#   mq_ranks        the rank count mq_launch uses without -n
#   mq_bin          prints the mpiquant to run: MQ_BIN, else $root/build/bin/mpiquant, built
#                   (Release) when missing
#   mq_attempt      one log line naming the job, the attempt (Slurm requeues) and the ranks
#
# Threads: OPENBLAS_NUM_THREADS = SLURM_CPUS_PER_TASK inside an allocation that sets it, else
# the caller's value, else 1 (several ranks share the cores). Keep it equal on all ranks.

mq_in_slurm() {
  [ -n "${SLURM_JOB_ID:-}" ] && [ "${MQ_LAUNCHER:-}" != mpirun ] && command -v srun >/dev/null 2>&1
}

mq_ranks() {
  if mq_in_slurm; then echo "${SLURM_NTASKS:-1}"; else echo "${MQ_NP:-2}"; fi
}

mq_launch() {
  local np=""
  if [ "${1:-}" = -n ]; then np=$2; shift 2; fi
  local cmd
  if mq_in_slurm; then
    cmd=(srun "--mpi=${MQ_SRUN_MPI:-pmix}")
    [ -n "$np" ] && cmd+=(-n "$np")
    [ -n "${SLURM_CPUS_PER_TASK:-}" ] && cmd+=("--cpus-per-task=$SLURM_CPUS_PER_TASK")
  else
    export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
    cmd=(mpirun --oversubscribe)
    # Open MPI binds each rank to one core when there are at most 2: wrong for threaded ranks
    [ "${OPENBLAS_NUM_THREADS:-1}" -gt 1 ] && cmd+=(--bind-to none)
    cmd+=(-np "${np:-${MQ_NP:-2}}")
  fi
  "${cmd[@]}" "$@" &
  local pid=$! rc=0
  trap 'mq_signal=TERM; kill -USR1 '"$pid"' 2>/dev/null' TERM
  trap 'mq_signal=USR1; kill -USR1 '"$pid"' 2>/dev/null' USR1
  # a SIGUSR1 that came while no launcher ran (below) is passed on now
  [ -n "${mq_signal:-}" ] && kill -USR1 "$pid" 2>/dev/null
  while :; do
    rc=0
    wait "$pid" || rc=$?
    # above 128: wait was cut short by a trapped signal (forwarded by the trap); wait again
    # until the launcher itself has ended (then wait returns its own status)
    [ "$rc" -gt 128 ] && kill -0 "$pid" 2>/dev/null && continue
    if [ "$rc" -gt 128 ]; then
      local again=0
      wait "$pid" 2>/dev/null || again=$?
      [ "$again" -ne 127 ] && rc=$again
    fi
    break
  done
  trap 'mq_signal=USR1' USR1
  trap - TERM
  return "$rc"
}

mq_bin() {
  local bin=${MQ_BIN:-$root/build/bin/mpiquant}
  if [ ! -x "$bin" ]; then
    echo "mq_bin: building $bin" >&2
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
      cmake --build "$root/build" -j "$(nproc)" >/dev/null || return 1
  fi
  echo "$bin"
}

mq_attempt() {
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "== ${SLURM_JOB_NAME:-job} $SLURM_JOB_ID attempt $((${SLURM_RESTART_COUNT:-0} + 1)) on" \
      "$(hostname -s), $(date '+%F %T'): $(mq_ranks) ranks, $OPENBLAS_NUM_THREADS thread(s) each"
  else
    echo "== $(basename "$0") on $(hostname -s), $(date '+%F %T'): $(mq_ranks) ranks" \
      "(mpirun), $OPENBLAS_NUM_THREADS thread(s) each"
  fi
}

export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${OPENBLAS_NUM_THREADS:-1}}
# Slurm's walltime warning (--signal=B:USR1@T) may come between two launches: remembered, not
# fatal to the script (bash would end on it), and passed on by the next mq_launch.
trap 'mq_signal=USR1' USR1
