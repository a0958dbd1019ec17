#!/usr/bin/env bash
# Installs the peers uring-bench compares against that are not Swift
# packages, from Debian's packages: fio (randread), valgrind (instruction
# counts for nop), nginx and wrk (http). The Swift peers (NIOFileSystem,
# SwiftNIO, Hummingbird) are package dependencies.
set -euo pipefail
need=()
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -eq 0 ]; then echo "peers present: fio, valgrind, wrk, nginx"; exit 0; fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
