#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine (Debian's `slurm-wlm` + `munge`),
# for the test of `fnas slurm --submit` and for trying it by hand. Idempotent.
#   - installs `slurm-wlm` and `munge` with apt when they are missing;
#   - starts munged with a key made on first use;
#   - writes /etc/slurm/slurm.conf for one node (this host, all its CPUs, no cgroups:
#     proctrack/linuxproc, task/none) with state, spool and logs under $FNAS_SLURM_DIR
#     (default /var/tmp/fnas-slurm);
#   - starts slurmctld and slurmd and waits until the partition `debug` is up.
# Stop: kill the pids in $FNAS_SLURM_DIR/slurmctld.pid and slurmd.pid.
set -euo pipefail
say() { printf 'slurm: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

dir=${FNAS_SLURM_DIR:-/var/tmp/fnas-slurm}
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  say "installing slurm-wlm and munge (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: the key and the daemon
as_root mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -f /etc/munge/munge.key ]; then
  as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
as_root chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
as_root chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  as_root munged --force
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf for this one node
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ { m = int($2 / 1024) - 1024; print (m > 512 ? m : 512) }' /proc/meminfo)
as_root mkdir -p "$dir/state" "$dir/spool" "$dir/log" /etc/slurm
conf=$(cat <<EOF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" | as_root tee /etc/slurm/slurm.conf >/dev/null
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive "$dir/slurmctld.pid"; then
  say "starting slurmctld"
  as_root slurmctld
fi
if ! alive "$dir/slurmd.pid"; then
  say "starting slurmd"
  as_root slurmd
fi
for _ in $(seq 100); do
  if sinfo -h -o '%a %T' 2>/dev/null | grep -Eq '^up (idle|mixed|allocated)'; then
    say "ready: partition debug on $host ($cpus CPUs)"
    exit 0
  fi
  # a node left down by an earlier run comes back
  as_root scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 0.2
done
say "error: slurm did not come up; see $dir/log/slurmctld.log and $dir/log/slurmd.log"
sinfo >&2 || true
exit 1
