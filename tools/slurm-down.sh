#!/bin/bash
# Stops the private Slurm of tools/slurm-up.sh DIR: slurmd, slurmctld and munged, each by the
# pid in its pid file under DIR (never by name), waiting up to 10 s each before SIGKILL.
#   bash tools/slurm-down.sh DIR
set -u
dir=${1:?usage: slurm-down.sh DIR}
[ -d "$dir" ] || exit 0
for d in slurmd slurmctld munged; do
  f=$dir/$d.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null)
  # only a live process of that program (a stale pid file may name a reused pid)
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$d" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
      [ -d /proc/"$pid" ] || break
      sleep 0.1
    done
    if [ -d /proc/"$pid" ]; then
      echo "slurm-down: $d ($pid) still running after 10 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$f"
done
exit 0
