# Sourced by the job scripts: how to start mpiquant on the ranks we have.
# Under Slurm (SLURM_JOB_ID set) srun starts one task per allocated rank; otherwise mpirun
# starts MQ_NP ranks (default 2) on this machine.
mq_launch() {
  if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
    srun "$@"
  else
    export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
    # Open MPI binds each rank to one core when there are at most 2: wrong for threaded ranks
    local bind=()
    [ "${OPENBLAS_NUM_THREADS:-1}" -gt 1 ] && bind=(--bind-to none)
    mpirun --oversubscribe "${bind[@]}" -np "${MQ_NP:-2}" "$@"
  fi
}
# Several ranks share the cores: one BLAS thread each unless the user says otherwise.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
