#!/usr/bin/env bash
# Install community-gateway as a systemd service on Raspberry Pi OS Bookworm (any Debian 12 works;
# a non-Pi just gets no GPIO library).
#
#   sudo systemd/install.sh [--wheels DIR] [--dry-run] [--uninstall] [--prefix /opt/community-gateway]
#   systemd/install.sh --print-config     # the example config it would write, to stdout
#
# Idempotent: re-run it after `git pull` to update in place; what is already in place is left alone,
# /etc/community-gateway and /var/lib/community-gateway are never overwritten. --wheels DIR installs
# offline from a directory made by `make wheels` (no package index needed). In a chroot (a pi-gen
# stage, an image build) the unit is enabled, not started. --uninstall removes the unit and the venv
# but keeps the config and the state (outbox, alarm state). --dry-run prints every action, prefixed
# "would:", and changes nothing (it does not need root). Details: docs/install.md.
#
# INSTALL_ROOT=DIR (tests, --dry-run only) inspects DIR as if it were /: etc/passwd, etc/group,
# proc/device-tree/model, the venv, the unit and the config are looked up under it.
set -euo pipefail
trap 'printf "install.sh: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

NAME=community-gateway
PREFIX=/opt/community-gateway
DRY=0
UNINSTALL=0
PRINT_CONFIG=0
WHEELS=""
ROOT="${INSTALL_ROOT:-}"
PYTHON="${PYTHON:-python3}"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ETC=/etc/$NAME
CONF=$ETC/gateway.toml
STATE=/var/lib/$NAME
UNIT_DST=/etc/systemd/system/$NAME.service
WANTS=/etc/systemd/system/multi-user.target.wants/$NAME.service
DEFAULT_EXEC_PREFIX=/opt/community-gateway

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --print-config) PRINT_CONFIG=1 ;;
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a directory"; PREFIX="$2"; shift ;;
        --prefix=*) PREFIX="${1#--prefix=}" ;;
        --wheels) [[ $# -ge 2 ]] || die "--wheels needs a directory"; WHEELS="$2"; shift ;;
        --wheels=*) WHEELS="${1#--wheels=}" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; printf 'install.sh: unknown option %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

PREFIX="${PREFIX%/}"
[[ "$PREFIX" == /* && "$PREFIX" != "/" && "$PREFIX" != *[[:space:]]* ]] \
    || die "--prefix must be an absolute directory without spaces, not '$PREFIX'"
VENV=$PREFIX/venv
DOC=$PREFIX/doc
RELEASES=$PREFIX/releases        # releases/<version> (venvs), releases/current -> <version>: docs/updates.md
LAUNCHER=$PREFIX/launcher        # what the unit runs: starts current, rolls back a failed update
CLI=$RELEASES/current/bin/gateway
STAMP=$VENV/.community-gateway-source

# ---- helpers -------------------------------------------------------------------------------------
r() { printf '%s%s' "$ROOT" "$1"; }            # a path as seen on the inspected system
ok() { printf 'ok: %s\n' "$*"; }
CHANGED=0
act() {                                         # every change goes through here
    CHANGED=1
    if [[ $DRY -eq 1 ]]; then printf 'would: %s\n' "$*"; else printf '+ %s\n' "$*"; "$@"; fi
}

has_group() {
    if [[ -n "$ROOT" ]]; then grep -q "^$1:" "$ROOT/etc/group" 2>/dev/null; else getent group "$1" >/dev/null; fi
}
has_user() {
    if [[ -n "$ROOT" ]]; then grep -q "^$1:" "$ROOT/etc/passwd" 2>/dev/null; else getent passwd "$1" >/dev/null; fi
}
in_group() {  # in_group USER GROUP (supplementary membership, as usermod -aG makes it)
    local members
    if [[ -n "$ROOT" ]]; then
        members=$(awk -F: -v g="$2" '$1 == g { print $4 }' "$ROOT/etc/group" 2>/dev/null)
    else
        members=$(getent group "$2" | cut -d: -f4)
    fi
    [[ ",$members," == *",$1,"* ]]
}
gid_of() {
    if [[ -n "$ROOT" ]]; then awk -F: -v g="$1" '$1 == g { print $3 }' "$ROOT/etc/group" 2>/dev/null
    else getent group "$1" | cut -d: -f3; fi
}
pip_has() {  # a distribution installed in the venv, by its dist-info directory
    compgen -G "$(r "$VENV")/lib/python3*/site-packages/$1-*.dist-info" >/dev/null
}

board_model() { tr -d '\0' 2>/dev/null < "$(r /proc/device-tree/model)" || true; }
board_kind() {
    case "$1" in
        *"Raspberry Pi 5"*|*"Compute Module 5"*|*"Raspberry Pi 500"*) echo pi5 ;;
        *"Raspberry Pi"*) echo pi ;;
        *) echo none ;;
    esac
}

# The example config is package data (gateway/examples/gateway.toml), on stdin: the installed
# package's own, so it always matches the version installed. `gateway check` rejects it until the
# technician has set the gateway id and the sensors' unit ids: a fresh install sounds nothing.
render_config() {
    printf '# %s: written by systemd/install.sh on %s from the installed package'"'"'s example.\n' "$CONF" "$(date -u +%F)"
    if [[ "$1" == none ]]; then  # no GPIO library off a Pi: the relays are simulated
        sed 's/^backend = "rpi"$/backend = "sim"  # not a Raspberry Pi: simulated relays; "rpi" on a Pi/'
    else
        cat
    fi
}

render_unit() {
    sed "s|$DEFAULT_EXEC_PREFIX|$PREFIX|g" "$SRC/systemd/$NAME.service"
}

source_stamp() {  # what the venv was installed from: a hash of the package's files in the checkout
    (
        cd "$SRC"
        paths=()
        for p in pyproject.toml gateway drivers config; do [[ -e "$p" ]] && paths+=("$p"); done
        find "${paths[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
    )
}

gateway_wheel() {  # the newest community-gateway wheel in --wheels DIR
    compgen -G "$WHEELS/community_gateway-*.whl" | sort -V | tail -n 1
}

install_file() {  # install_file SRC DST MODE: copy unless identical
    if [[ -f "$(r "$2")" ]] && cmp -s "$1" "$(r "$2")"; then ok "$2 is up to date"; return; fi
    act install -D -m "$3" "$1" "$2"
}

MODEL=$(board_model)
KIND=$(board_kind "$MODEL")

if [[ $PRINT_CONFIG -eq 1 ]]; then
    example="$SRC/gateway/examples/gateway.toml"
    if [[ -f "$example" ]]; then render_config "$KIND" < "$example"
    elif [[ -x "$(r "$VENV/bin/python")" ]]; then "$VENV/bin/python" -m gateway.examples | render_config "$KIND"
    else die "no example config: neither $example nor an installed $VENV"; fi
    exit 0
fi

# Is systemd running? sd_booted(3): /run/systemd/system exists only when systemd is PID 1. In a chroot
# (pi-gen stages, an image build) `systemctl daemon-reload`/`start` fail ("System has not been booted
# with systemd") while `systemctl enable` works on the unit files: enable, do not start, say so.
BOOTED=1
WHERE=""
if [[ ! -d "$(r /run/systemd/system)" ]]; then
    BOOTED=0
    if [[ -n "$ROOT" ]]; then WHERE="in a chroot or image build (no /run/systemd/system in $ROOT)"
    elif systemd-detect-virt --quiet --chroot 2>/dev/null; then WHERE="in a chroot (an image build such as a pi-gen stage)"
    elif [[ ! -e /proc/1 ]]; then WHERE="in a chroot (no /proc mounted)"
    else WHERE="not booted with systemd (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): a chroot or a container"; fi
fi

# ---- refusals before anything happens ---------------------------------------------------------------
if [[ -n "$ROOT" && $DRY -eq 0 ]]; then
    die "INSTALL_ROOT is for --dry-run (tests) only; a real install works on /"
fi
if [[ $DRY -eq 0 && $(id -u) -ne 0 ]]; then
    die "run it as root: sudo $0 $* (or add --dry-run to see what it would do)"
fi
[[ -f "$SRC/systemd/$NAME.service" ]] || die "$SRC is not a community-gateway checkout (no systemd/$NAME.service)"
PIP_FROM=()  # where pip finds packages: the index, or only --wheels DIR
if [[ -n "$WHEELS" ]]; then
    [[ -d "$WHEELS" ]] || die "--wheels $WHEELS is not a directory (make one with: make wheels)"
    WHEELS="$(cd "$WHEELS" && pwd)"
    [[ -n "$(gateway_wheel)" ]] || die "--wheels $WHEELS holds no community_gateway-*.whl (make one with: make wheels)"
    PIP_FROM=(--no-index --find-links "$WHEELS")
    gpio_wheel=""
    case "$KIND" in pi5) gpio_wheel=rpi_lgpio ;; pi) gpio_wheel=RPi.GPIO ;; esac
    if [[ -n "$gpio_wheel" ]] && ! (shopt -s nocaseglob; compgen -G "$WHEELS/${gpio_wheel//[._]/[._-]}-*" >/dev/null); then
        die "--wheels $WHEELS has no $gpio_wheel for this $MODEL: the relays need it (docs/install.md, \"Offline\")"
    fi
else
    [[ -f "$SRC/pyproject.toml" ]] || die "$SRC has no pyproject.toml to install from: give --wheels DIR"
fi

[[ $DRY -eq 1 ]] && printf 'dry run: nothing will be changed\n'
printf 'community-gateway installer: checkout %s, prefix %s, board: %s\n' "$SRC" "$PREFIX" "${MODEL:-not a Raspberry Pi}"
[[ -n "$WHEELS" ]] && printf 'offline: installing from %s\n' "$WHEELS"
[[ $BOOTED -eq 0 ]] && printf 'note: %s: the unit will be enabled, not started\n' "$WHERE"

# ---- uninstall ----------------------------------------------------------------------------------------
if [[ $UNINSTALL -eq 1 ]]; then
    if [[ -e "$(r "$UNIT_DST")" || -L "$(r "$WANTS")" ]]; then
        if [[ $BOOTED -eq 1 ]]; then act systemctl disable --now "$NAME"; else act systemctl disable "$NAME"; fi
        act rm -f "$UNIT_DST"
        [[ $BOOTED -eq 1 ]] && act systemctl daemon-reload
    else
        ok "no unit installed"
    fi
    case "$(readlink "$(r /usr/local/bin/gateway)" 2>/dev/null || true)" in
        "$VENV/bin/gateway"|"$CLI") act rm -f /usr/local/bin/gateway ;;
    esac
    if [[ -d "$(r "$RELEASES")" ]]; then act rm -rf "$RELEASES"; fi
    if [[ -d "$(r "$LAUNCHER")" ]]; then act rm -rf "$LAUNCHER"; fi
    if [[ -d "$(r "$VENV")" ]]; then act rm -rf "$VENV"; else ok "no venv at $VENV"; fi
    if [[ -d "$(r "$DOC")" ]]; then act rm -rf "$DOC"; fi
    if [[ -d "$(r "$PREFIX")" ]]; then act rmdir --ignore-fail-on-non-empty "$PREFIX"; fi
    printf '\nkept: %s (config), %s (outbox and alarm state), the user %s.\n' "$ETC" "$STATE" "$NAME"
    printf 'to remove them as well: sudo rm -rf %s %s && sudo userdel %s\n' "$ETC" "$STATE" "$NAME"
    exit 0
fi

# ---- install ------------------------------------------------------------------------------------------
codename=$(. "$(r /etc/os-release)" 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}") || codename=""
[[ "$codename" == bookworm ]] || printf 'note: written for Raspberry Pi OS / Debian bookworm, this is "%s"; carrying on\n' "${codename:-unknown}"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is missing or older than 3.11 (Bookworm ships 3.11: sudo apt install python3)"
if "$PYTHON" -c 'import ensurepip' 2>/dev/null; then ok "python venv support present"
else act apt-get install -y python3-venv; fi

# The service's user and groups. gpio exists on Raspberry Pi OS; elsewhere create it, because
# SupplementaryGroups= naming a missing group makes systemd refuse to start the unit.
for g in "$NAME" dialout gpio; do
    if has_group "$g"; then ok "group $g exists"; else act groupadd --system "$g"; fi
done
if has_user "$NAME"; then
    ok "user $NAME exists"
    for g in dialout gpio; do
        in_group "$NAME" "$g" || act usermod -a -G "$g" "$NAME"
    done
else
    act useradd --system --gid "$NAME" --groups dialout,gpio --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin --comment "community-gateway daemon" "$NAME"
fi
# The technician running sudo gets the CLI: the control socket is 0660 in the service's group.
RELOGIN=0
if [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]] && ! in_group "$SUDO_USER" "$NAME"; then
    act usermod -a -G "$NAME" "$SUDO_USER"
    RELOGIN=1
fi

# PEP 668: Bookworm's system Python refuses pip installs, so the gateway lives in its own venv.
if [[ -x "$(r "$VENV/bin/python")" ]]; then ok "venv $VENV exists"; else act "$PYTHON" -m venv "$VENV"; fi
if [[ -n "$WHEELS" ]]; then
    wheel=$(gateway_wheel)
    stamp=$(sha256sum "$wheel" | cut -c1-16)
    from="wheel $(basename "$wheel")"
else
    stamp=$(source_stamp)
    from="checkout"
fi
if [[ "$(cat "$(r "$STAMP")" 2>/dev/null || true)" == "$stamp" ]]; then
    ok "package already installed from this $from (source $stamp)"
elif [[ -n "$WHEELS" ]]; then
    act "$VENV/bin/python" -m pip install --upgrade "${PIP_FROM[@]}" "$wheel"
    # a newer checkout with the same version number: pip would call it satisfied and keep the old files
    act "$VENV/bin/python" -m pip install --no-index --no-deps --force-reinstall "$wheel"
    if [[ $DRY -eq 1 ]]; then printf 'would: record source %s in %s\n' "$stamp" "$STAMP"
    else printf '%s\n' "$stamp" > "$STAMP"; fi
else
    act "$VENV/bin/python" -m pip install --upgrade "$SRC"
    if [[ $DRY -eq 1 ]]; then printf 'would: record source %s in %s\n' "$stamp" "$STAMP"
    else printf '%s\n' "$stamp" > "$STAMP"; fi
fi

# GPIO: RPi.GPIO cannot drive a Pi 5 (its GPIO sits behind the RP1); rpi-lgpio provides the same
# RPi.GPIO module through lgpio there. Both own the RPi/GPIO files, so the old one goes first.
case "$KIND" in
    pi5)
        pip_has RPi.GPIO && act "$VENV/bin/python" -m pip uninstall -y RPi.GPIO
        if pip_has rpi_lgpio; then ok "rpi-lgpio installed"; else act "$VENV/bin/python" -m pip install "${PIP_FROM[@]}" rpi-lgpio; fi
        ;;
    pi)
        if pip_has RPi.GPIO; then ok "RPi.GPIO installed"; else act "$VENV/bin/python" -m pip install "${PIP_FROM[@]}" RPi.GPIO; fi
        ;;
    none) ok "not a Raspberry Pi: no GPIO library (use [gpio] backend = \"sim\")" ;;
esac

# A wheel built without its package data would install and then find no profiles (issue 10): say so now.
if [[ $DRY -eq 0 ]]; then
    "$VENV/bin/python" -c 'import sys; from gateway.profiles import SHIPPED; from gateway.contract import SCHEMAS
sys.exit(not (any(SHIPPED.glob("*.toml")) and any(SCHEMAS.glob("*.json"))))' \
        || die "the installed package has no shipped profiles or JSON Schemas: it was built without its package data (rebuild the wheels: make wheels)"
    ok "the installed package carries its profiles, schemas and example config"
fi

# Releases (docs/updates.md). The venv installed here is a release by a symlink, releases/<version>
# -> ../venv, and releases/current points at it: `gateway update FILE` and the platform's `update`
# command install releases/<version> venvs beside it and switch current. releases/ is the service's
# (the daemon applies a platform update; the unit's ReadWritePaths= lists it); the launcher, which the
# unit runs and which rolls back a failed update, is root's and outside every release.
if [[ -d "$(r "$RELEASES")" ]]; then ok "$RELEASES exists"
else act install -d -m 0755 -o "$NAME" -g "$NAME" "$RELEASES"; fi
for f in launcher.py journal.py releases.py; do
    install_file "$SRC/gateway/update/$f" "$LAUNCHER/$f" 0644
done
cur=$(readlink "$(r "$RELEASES/current")" 2>/dev/null || true)
if [[ $DRY -eq 1 && -n "$cur" && "$(readlink "$(r "$RELEASES/$cur")" 2>/dev/null || true)" == ../venv ]]; then
    ok "$RELEASES/current -> $cur -> ../venv"
elif [[ $DRY -eq 1 ]]; then
    printf 'would: link %s/<version> -> ../venv (the installed version) and point %s/current at it\n' "$RELEASES" "$RELEASES"
    CHANGED=1
else
    version=$("$VENV/bin/python" -c 'import gateway; print(gateway.__version__)')
    [[ "$(cat "$VENV/.community-gateway-release" 2>/dev/null || true)" == "$version" ]] \
        || printf '%s\n' "$version" > "$VENV/.community-gateway-release"
    if [[ "$(readlink "$RELEASES/$version" 2>/dev/null || true)" == ../venv ]]; then ok "$RELEASES/$version -> ../venv"
    else
        # an update's venv of the same version: the one installed now wins
        [[ -e "$RELEASES/$version" || -L "$RELEASES/$version" ]] && act rm -rf "$RELEASES/$version"
        act ln -s ../venv "$RELEASES/$version"
    fi
    if [[ "$(readlink "$RELEASES/current" 2>/dev/null || true)" == "$version" ]]; then ok "$RELEASES/current -> $version"
    else  # one rename(2), as an update switches: never a moment without current
        act ln -sfn "$version" "$RELEASES/.current.tmp"
        act mv -T "$RELEASES/.current.tmp" "$RELEASES/current"
    fi
fi

# The CLI on PATH for the technician: the current release's (it follows an update); an existing
# gateway command that is not ours is left alone.
LINK=/usr/local/bin/gateway
case "$(readlink "$(r "$LINK")" 2>/dev/null || true)" in
    "$CLI") ok "$LINK -> $CLI" ;;
    "$VENV/bin/gateway") act ln -sfn "$CLI" "$LINK" ;;  # ours, from before releases
    *)
        if [[ -e "$(r "$LINK")" || -L "$(r "$LINK")" ]]; then printf 'note: %s exists and is not ours; leaving it\n' "$LINK"
        else act ln -s "$CLI" "$LINK"; fi ;;
esac

# Docs next to the venv: the unit's Documentation= points here.
for doc in README.md config/README.md docs/install.md hw/README.md hw/wiring.png; do
    [[ -f "$SRC/$doc" ]] && install_file "$SRC/$doc" "$DOC/$doc" 0644
done

# The data directory (outbox, alarm state): kept as it is once there. systemd's StateDirectory= makes it
# too, but only at the first start, and a chroot install never starts.
if [[ -d "$(r "$STATE")" ]]; then ok "keeping the data directory $STATE"
else act install -d -m 0750 -o "$NAME" -g "$NAME" "$STATE"; fi

# The config directory: root:community-gateway 0770. The daemon writes here (a platform config push
# replaces gateway.toml through a temp file and a rename, keeping gateway.toml.previous), and the unit
# lists it in ReadWritePaths= because ProtectSystem=strict makes /etc read-only for the service.
if [[ -d "$(r "$ETC")" ]]; then
    if [[ "$(stat -c '%a %u %g' "$(r "$ETC")")" == "770 0 $(gid_of "$NAME")" ]]; then ok "$ETC is root:$NAME 0770"
    else act chown "root:$NAME" "$ETC"; act chmod 0770 "$ETC"; fi
else
    act install -d -m 0770 -o root -g "$NAME" "$ETC"
fi

# The config: the package's example only when there is none. Never overwritten, never merged.
if [[ -e "$(r "$CONF")" ]]; then
    ok "keeping the existing $CONF"
elif [[ $DRY -eq 1 ]]; then
    printf 'would: write %s from the installed package'"'"'s example config (gpio backend %s; gateway check rejects it until [gateway] id and the sensors are set), mode 0640 root:%s\n' \
        "$CONF" "$([[ $KIND == none ]] && echo sim || echo rpi)" "$NAME"
    CHANGED=1
else
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    "$VENV/bin/python" -m gateway.examples | render_config "$KIND" > "$tmp"
    act install -m 0640 -o root -g "$NAME" "$tmp" "$CONF"
fi

# The unit. daemon-reload only when it changed; restart only when something changed.
unit_src="$SRC/systemd/$NAME.service"
if [[ "$PREFIX" != "$DEFAULT_EXEC_PREFIX" ]]; then  # ExecStart= and Documentation= follow --prefix
    unit_src=$(mktemp --suffix=".$NAME.service")
    trap 'rm -f "$unit_src" ${tmp:+"$tmp"}' EXIT
    render_unit > "$unit_src"
    printf 'unit for prefix %s: %s\n' "$PREFIX" "$(grep '^ExecStart=' "$unit_src")"
fi
if [[ -f "$(r "$UNIT_DST")" ]] && cmp -s "$unit_src" "$(r "$UNIT_DST")"; then
    ok "$UNIT_DST is up to date"
else
    act install -m 0644 "$unit_src" "$UNIT_DST"
    [[ $BOOTED -eq 1 ]] && act systemctl daemon-reload
fi
if [[ -L "$(r "$WANTS")" ]] || { [[ -z "$ROOT" ]] && systemctl is-enabled --quiet "$NAME" 2>/dev/null; }; then
    ok "$NAME is enabled at boot"
else
    act systemctl enable "$NAME"
fi
if [[ $BOOTED -eq 0 ]]; then
    printf 'note: %s: %s is enabled and not started; it starts at the next boot\n' "$WHERE" "$NAME"
elif [[ $CHANGED -eq 1 ]]; then
    act systemctl restart "$NAME"   # starts it, or picks up the new package and unit
else
    act systemctl start "$NAME"     # nothing changed: a no-op when it is already running
fi

if [[ $BOOTED -eq 1 ]]; then third="sudo systemctl restart $NAME && gateway status"
else third="boot the image (the service starts by itself), then: gateway status"; fi
cat <<EOF

next steps:
  1. edit $CONF for this site: set [gateway] id and each sensor's unit
     (gateway scan BUS finds them), remove what the site does not have, add [uplink]
  2. gateway check -c $CONF
     (until it says "configuration is valid" the service does not start: one journal line says why)
  3. $third
  the daemon's log: journalctl -u $NAME -f; hardware and bench test: $DOC/hw/README.md
EOF
if [[ $RELOGIN -eq 1 ]]; then
    printf '  %s %s added to the group %s: log out and in again before using the gateway CLI\n' \
        "$SUDO_USER" "$([[ $DRY -eq 1 ]] && echo would be || echo was)" "$NAME"
fi
if [[ "$KIND" == pi ]]; then
    printf '  on a Pi 3/4: put dtoverlay=disable-bt in /boot/firmware/config.txt so /dev/ttyAMA0 is the PL011 UART (see hw/README.md)\n'
fi
