#!/bin/sh
# Runs in every k3d node before k3s starts: Cilium needs bpffs and a shared cgroup2 mount.
set -e
mount bpffs -t bpf /sys/fs/bpf && mount --make-shared /sys/fs/bpf
mkdir -p /run/cilium/cgroupv2 && mount -t cgroup2 none /run/cilium/cgroupv2 && mount --make-shared /run/cilium/cgroupv2
