#!/bin/sh
# Build logmeter/haproxy:<tag> with `docker import` from Debian's /usr/sbin/haproxy + its shared libs
# (from ldd) + busybox-static (shell/wget/nc for debugging and health checks).
# Usage: stack/docker/build-haproxy.sh [image-ref]   (default logmeter/haproxy:1)
# Honours DOCKER_HOST (else /var/run/docker.sock). Needs: haproxy, busybox-static, tar, ldd.
set -eu
IMAGE="${1:-logmeter/haproxy:1}"
BB=/bin/busybox
HAP=/usr/sbin/haproxy
ROOT="$(mktemp -d /tmp/logmeter-haproxy.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT INT TERM

mkdir -p "$ROOT/bin" "$ROOT/usr/sbin" "$ROOT/etc/haproxy" "$ROOT/run/haproxy" "$ROOT/var/lib/haproxy" \
         "$ROOT/root" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
mkdir -m 1777 "$ROOT/tmp"
cp "$BB" "$ROOT/bin/busybox"
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"; done
ln -s bin "$ROOT/sbin"
ln -s ../bin "$ROOT/usr/bin"
cp "$HAP" "$ROOT/usr/sbin/haproxy"
# shared libs (incl. the dynamic loader), dereferenced, at the same absolute paths as on the host
ldd "$HAP" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
cat > "$ROOT/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
haproxy:x:100:101::/var/lib/haproxy:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$ROOT/etc/group" <<'G'
root:x:0:
haproxy:x:101:
nogroup:x:65534:
G
echo 'hosts: files dns' > "$ROOT/etc/nsswitch.conf"
cat > "$ROOT/etc/haproxy/haproxy.cfg" <<'C'
global
  log stdout format raw local0
defaults
  log global
  mode http
  option httplog
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind :80
  http-request return status 200 content-type text/plain string "haproxy ok\n"
C

tar -C "$ROOT" --numeric-owner --owner=0 --group=0 --sort=name -cf - . \
  | docker import \
      --change 'ENV PATH=/usr/sbin:/bin:/sbin:/usr/bin' \
      --change 'ENTRYPOINT ["/usr/sbin/haproxy"]' \
      --change 'CMD ["-db", "-f", "/etc/haproxy/haproxy.cfg"]' \
      --message "logmeter haproxy from Debian $("$HAP" -v | head -1 | cut -d' ' -f3)" \
      - "$IMAGE"
