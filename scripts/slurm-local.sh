#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests of `--executor slurm` (and for trying it):
# installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf for this host
# (one node with the CPUs of nproc, one partition, no accounting), and starts munged, slurmctld and
# slurmd as root without systemd. Idempotent: a cluster already up is left as it is.
#   sudo bash scripts/slurm-local.sh          # set up and start
#   sudo bash scripts/slurm-local.sh stop     # stop the daemons it started
set -euo pipefail

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
conf=/etc/slurm/slurm.conf

if [ "${1:-}" = "stop" ]; then
  for p in /run/slurmd.pid /run/slurmctld.pid; do
    [ -f "$p" ] && $SUDO kill "$(cat "$p")" 2>/dev/null || true
  done
  [ -f /run/munge/munged.pid ] && $SUDO kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  exit 0
fi

if command -v scontrol >/dev/null 2>&1 && [ -f "$conf" ] && scontrol ping 2>/dev/null | grep -q UP &&
  sinfo -h -o '%T' 2>/dev/null | grep -Eq 'idle|mixed|allocated'; then
  echo "slurm-local: SLURM is already up ($(sinfo -h -o '%P %D %T %c' | head -1))"
  exit 0
fi

need=()
for p in slurm-wlm munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "slurm-local: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)

# munge: a key, its folders, the daemon (as the munge user where there is one).
$SUDO mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
if id munge >/dev/null 2>&1; then
  $SUDO chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  $SUDO chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  $SUDO chmod 0755 /run/munge
  $SUDO chmod 0400 /etc/munge/munge.key
fi
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  if id munge >/dev/null 2>&1; then
    $SUDO runuser -u munge -- /usr/sbin/munged
  else
    $SUDO /usr/sbin/munged --force
  fi
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf: one node (this host, reached on the loopback), one default partition, no accounting:
# jobs are followed with squeue and scontrol, and finished jobs stay known for MinJobAge seconds.
$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
$SUDO tee "$conf" >/dev/null <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on ${host}.
ClusterName=semdedup-local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN
PartitionName=local Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF

if ! scontrol ping 2>/dev/null | grep -q UP; then
  [ -f /run/slurmctld.pid ] && $SUDO kill "$(cat /run/slurmctld.pid)" 2>/dev/null || true
  $SUDO /usr/sbin/slurmctld -c >/dev/null 2>&1 || $SUDO /usr/sbin/slurmctld
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
if ! sinfo -h -n "$host" -o '%T' 2>/dev/null | grep -Eq 'idle|mixed|allocated'; then
  $SUDO /usr/sbin/slurmd || true  # refuses to start a second time, which is fine
fi
ok=""
for _ in $(seq 150); do
  state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -1 || true)
  case "$state" in
    idle*|mixed*|allocated*) ok=1; break ;;
    down*|drain*) $SUDO scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
if [ -z "$ok" ]; then
  echo "slurm-local: the node did not come up (state '${state:-unknown}'); logs in /var/log/slurm/" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  exit 1
fi
echo "slurm-local: SLURM is up: node ${host}, ${cpus} CPUs, partition local ($(sinfo -V))"
