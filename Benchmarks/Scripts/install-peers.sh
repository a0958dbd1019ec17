#!/usr/bin/env bash
# Installs the peers uring-bench compares against that are not Swift
# packages, from Debian's packages: fio (randread) and valgrind (instruction
# counts for nop). The Swift peers (NIOFileSystem) are package dependencies.
set -euo pipefail
need=()
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
if [ ${#need[@]} -eq 0 ]; then echo "peers present: fio, valgrind"; exit 0; fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
