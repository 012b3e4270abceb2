#!/usr/bin/env bash
# For machines that cannot reach a container registry: builds local stand-ins
# for the base images the Dockerfile and docker-compose.yml name, from
# Debian's packages (debootstrap) and this machine's Go toolchain, with
# buildah. Then:
#
#   make image GO_IMAGE=localhost/golang:1.26-bookworm RUNTIME_IMAGE=localhost/static-debian12:nonroot
#   POSTGRES_IMAGE=localhost/postgres:15 podman-compose up -d
#
# Needs root, buildah, podman, debootstrap and Go. Safe to run again: it
# rebuilds only the images that are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOTFS=${ROOTFS:-/var/tmp/mcpguard-debian-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
have() { podman image exists "$1"; }

if ! have localhost/debian:bookworm; then
	if [ ! -x "$ROOTFS/bin/sh" ]; then
		echo "==> debootstrap bookworm into $ROOTFS"
		debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR"
	fi
	echo "==> localhost/debian:bookworm"
	tar -C "$ROOTFS" -c . | podman import --change 'CMD ["/bin/bash"]' - localhost/debian:bookworm
fi

if ! have localhost/golang:1.26-bookworm; then
	echo "==> localhost/golang:1.26-bookworm (Debian + $(go version | cut -d' ' -f3))"
	ctr=$(buildah from localhost/debian:bookworm)
	buildah copy "$ctr" "$(go env GOROOT)" /usr/local/go >/dev/null
	buildah copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
	buildah config --env GOPATH=/go --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env GOPROXY="$(go env GOPROXY)" --workingdir /go "$ctr"
	buildah commit --rm "$ctr" localhost/golang:1.26-bookworm >/dev/null
fi

if ! have localhost/static-debian12:nonroot; then
	# What distroless/static-debian12:nonroot holds: CA certificates, a
	# passwd with nonroot (65532), /tmp; no shell.
	echo "==> localhost/static-debian12:nonroot"
	dir=$(mktemp -d)
	mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/home/nonroot"
	chmod 1777 "$dir/tmp"
	chown 65532:65532 "$dir/home/nonroot"
	cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
	tar -C "$dir" -c . | podman import - localhost/static-debian12:nonroot
	rm -rf "$dir"
fi

if ! have localhost/postgres:15; then
	echo "==> localhost/postgres:15 (Debian's postgresql-15)"
	ctr=$(buildah from localhost/debian:bookworm)
	buildah run "$ctr" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null && rm -rf /var/lib/apt/lists/*'
	buildah run "$ctr" -- sh -c 'mkdir -p /var/lib/postgresql/data && chown postgres:postgres /var/lib/postgresql/data && chmod 700 /var/lib/postgresql/data'
	buildah copy --chmod 0755 "$ctr" scripts/local-images/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint >/dev/null
	buildah config --user postgres --env PGDATA=/var/lib/postgresql/data --env PATH=/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--volume /var/lib/postgresql/data --port 5432 --entrypoint '["/usr/local/bin/postgres-entrypoint"]' --cmd '[]' "$ctr"
	buildah commit --rm "$ctr" localhost/postgres:15 >/dev/null
fi
podman images --filter reference='localhost/*'
