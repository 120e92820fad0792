#!/usr/bin/env bash
# A one-worker nginx on 127.0.0.1 serving a small file, pinned to one core: the server the load
# benchmarks measure against (it must cost little and the same for every generator).
#   bench/lib/nginx.sh start PORT CORE   (prints the master pid)
#   bench/lib/nginx.sh stop PORT
# Runtime files live in ${TMPDIR:-/tmp}/aefm-nginx-PORT. SIZE: bytes of /index.html (128).
set -euo pipefail
cmd=$1; port=$2; core=${3:-1}
dir="${TMPDIR:-/tmp}/aefm-nginx-$port"
case "$cmd" in
start)
  mkdir -p "$dir/html" "$dir/tmp"
  head -c "${SIZE:-128}" /dev/zero | tr '\0' 'a' >"$dir/html/index.html"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  server { listen 127.0.0.1:$port backlog=4096; root $dir/html; }
}
CONF
  taskset -c "$core" "$(command -v nginx || echo /usr/sbin/nginx)" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
  for _ in $(seq 50); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
  cat "$dir/nginx.pid"
  ;;
stop)
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  ;;
pid) cat "$dir/nginx.pid" ;;
*) echo "usage: $0 start|stop|pid PORT [CORE]" >&2; exit 1 ;;
esac
