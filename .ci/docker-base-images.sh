#!/usr/bin/env bash
# Prepares local stand-ins for the base images that Dockerfile and deploy/nutcracker.Dockerfile name in
# FROM, so that the unchanged Dockerfiles build on a machine whose Docker Engine reaches no registry:
#
#   debian:bookworm-slim     a `debootstrap --variant=minbase bookworm` rootfs, slimmed like the
#                            official image and loaded with `docker import`;
#   rust:<ver>-slim-bookworm that rootfs plus gcc and libc6-dev (as in the official image), this
#                            machine's Rust toolchain laid out as the official image does
#                            (/usr/local/rustup, /usr/local/cargo), and this machine's CA bundle so
#                            that cargo can fetch crates through the local TLS setup.
#
# An image that already exists under the tag (a real one, or a stand-in from an earlier run) is kept.
# The debootstrap result is cached as a tarball under $KVCACHE_CI_CACHE (default ~/.cache/kvcache-ci),
# so a rerun that has lost its images still skips the download. KVCACHE_CI_REFRESH=1 rebuilds all.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${KVCACHE_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcache-ci}
mirror=${KVCACHE_CI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
refresh=${KVCACHE_CI_REFRESH:-0}
label=kvcache.ci.standin

log() { printf '[docker-base-images] %s\n' "$*" >&2; }
die() { printf '[docker-base-images] error: %s\n' "$*" >&2; exit 1; }
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable (is dockerd running?)"

# The tags come from the Dockerfile, so a toolchain bump there is one edit.
rust_tag=$(sed -n 's/^FROM[[:space:]]\{1,\}\(rust:[^[:space:]]*\).*/\1/p' "$repo/Dockerfile" | head -n 1)
[[ -n $rust_tag ]] || die "no 'FROM rust:...' line in $repo/Dockerfile"
debian_tag=debian:bookworm-slim

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

keep_existing() {
    local tag=$1
    if [[ $refresh != 1 ]] && have_image "$tag"; then
        local origin
        origin=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null || true)
        log "$tag present (${origin:+stand-in }${origin:-registry image}); kept"
        return 0
    fi
    return 1
}

# --- debian:bookworm-slim ------------------------------------------------------------------------
rootfs_tar=$cache/bookworm-minbase.tar

make_rootfs_tar() {
    [[ $(id -u) == 0 ]] || die "making the Debian rootfs needs root (debootstrap); run this as root"
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    mkdir -p "$cache"
    local work
    work=$(mktemp -d "$cache/rootfs.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$work'" EXIT
    log "debootstrap --variant=minbase bookworm (about a minute)"
    debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    local r=$work/root
    # Slim it the way the official -slim images are: no docs, man pages or locales now or later,
    # no package lists or downloaded .debs, and apt told to clean up after itself.
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
        "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
        "$r"/var/log/* "$r"/etc/resolv.conf "$r"/etc/hostname
    cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$r/etc/apt/apt.conf.d/docker-no-recommends"
    # The same suites as the official image, security updates included.
    rm -f "$r/etc/apt/sources.list"
    cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    tar --numeric-owner -C "$r" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$rootfs_tar"
    rm -rf "$work"
    trap - EXIT
    log "cached $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
}

if ! keep_existing "$debian_tag"; then
    if [[ $refresh == 1 || ! -s $rootfs_tar ]]; then
        make_rootfs_tar
    else
        log "using cached $rootfs_tar"
    fi
    docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL $label=debootstrap-minbase" \
        "$rootfs_tar" "$debian_tag" >/dev/null
    log "imported $debian_tag ($(docker image inspect -f '{{.Size}}' "$debian_tag" | awk '{printf "%.0f MB", $1/1e6}'))"
fi

# --- rust:<ver>-slim-bookworm --------------------------------------------------------------------
if ! keep_existing "$rust_tag"; then
    command -v rustc >/dev/null || die "rustc is not installed on this machine; it is copied into $rust_tag"
    sysroot=$(rustc --print sysroot)
    host_version=$(rustc --version | awk '{print $2}')
    wanted=${rust_tag#rust:}
    wanted=${wanted%%-*}
    case $host_version in
    "$wanted" | "$wanted".*) ;;
    *) die "$rust_tag wants Rust $wanted but this machine has $host_version; change the Dockerfile's FROM or the toolchain" ;;
    esac
    triple=$(rustc -vV | sed -n 's/^host: //p')
    [[ -r $ca_bundle ]] || die "CA bundle $ca_bundle not readable"

    stage=$(mktemp -d "${TMPDIR:-/tmp}/kvcache-rust-standin.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$stage'" EXIT
    tc=$stage/toolchain
    mkdir -p "$tc/bin" "$tc/lib/rustlib"
    # Only what `cargo build` needs (cargo, rustc, rustc's libraries, the std of the host target and
    # its self-contained linker bits); docs, clippy, rustfmt and rust-src stay out. Hard links when
    # the cache shares the file system, else copies.
    link_or_copy() { cp -al "$@" 2>/dev/null || cp -a "$@"; }
    link_or_copy "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$tc/bin/"
    link_or_copy "$sysroot"/lib/*.so* "$tc/lib/"
    link_or_copy "$sysroot/lib/rustlib/$triple" "$sysroot/lib/rustlib/etc" "$tc/lib/rustlib/"
    cp "$ca_bundle" "$stage/ca-certificates.crt"
    cat >"$stage/Dockerfile" <<EOF
FROM $debian_tag
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$host_version
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
# This machine's bundle: Debian's roots plus the local TLS-intercepting CA that crates.io is reached through.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain /usr/local/rustup/toolchains/$host_version-$triple
RUN mkdir -p /usr/local/cargo/bin \\
 && ln -s /usr/local/rustup/toolchains/$host_version-$triple/bin/cargo /usr/local/cargo/bin/cargo \\
 && ln -s /usr/local/rustup/toolchains/$host_version-$triple/bin/rustc /usr/local/cargo/bin/rustc \\
 && chmod -R a+w /usr/local/cargo \\
 && cargo --version && rustc --version
LABEL $label=host-toolchain-$host_version
EOF
    log "building $rust_tag from $debian_tag + Rust $host_version ($(du -sh "$tc" | cut -f1) toolchain)"
    docker build -q -t "$rust_tag" "$stage" >/dev/null
    rm -rf "$stage"
    trap - EXIT
    log "built $rust_tag ($(docker image inspect -f '{{.Size}}' "$rust_tag" | awk '{printf "%.0f MB", $1/1e6}'))"
fi
