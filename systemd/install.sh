#!/usr/bin/env bash
# Install community-gateway as a systemd service on Raspberry Pi OS Bookworm (any Debian 12 works;
# a non-Pi just gets no GPIO library).
#
#   sudo systemd/install.sh [--dry-run] [--uninstall] [--prefix /opt/community-gateway]
#   systemd/install.sh --print-config     # the example config it would write, to stdout
#
# Idempotent: re-run it after `git pull` to update; what is already in place is left alone and
# /etc/community-gateway/gateway.toml is never overwritten. --uninstall removes the unit and the venv
# but keeps the config and the state (outbox, alarm state). --dry-run prints every action, prefixed
# "would:", and changes nothing (it does not need root).
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
    sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --print-config) PRINT_CONFIG=1 ;;
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a directory"; PREFIX="$2"; shift ;;
        --prefix=*) PREFIX="${1#--prefix=}" ;;
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

# The example config: config/demo.toml with the simulator's loopback ports replaced by the header
# UART (first bus) and a USB adapter (the others), the state directory, and real GPIO on a Pi.
render_config() {
    local kind=$1 backend=sim
    [[ "$kind" != none ]] && backend=rpi
    printf '# %s: written by systemd/install.sh from config/demo.toml (%s).\n' "$CONF" "$(date -u +%F)"
    printf '# It still describes the demo community: edit [buses], [[sensors]], [outputs] and [[rules]] for\n'
    printf '# this site, add [uplink], then run: gateway check -c %s\n' "$CONF"
    awk -v state="$STATE" -v backend="$backend" '
        BEGIN { head = 1; n = 0; tcp = 0 }
        head && (/^#/ || /^[[:space:]]*$/) { next }      # the demo header talks about the simulator
        { head = 0 }
        /^\[/ { tcp = 0 }
        /^type[[:space:]]*=[[:space:]]*"tcp"/ { tcp = 1 }
        tcp && /^port[[:space:]]*=[[:space:]]*[0-9]+/ { print "port = 502  # the Modbus TCP standard port"; next }
        /^data_dir[[:space:]]*=/ { print "data_dir = \"" state "\""; next }
        /^port[[:space:]]*=[[:space:]]*"socket:\/\// {
            n++
            if (n == 1) print "port = \"/dev/ttyAMA0\"  # header UART through the RS485 HAT"
            else print "port = \"/dev/ttyUSB" (n - 2) "\"  # a USB serial adapter; prefer /dev/serial/by-id/..."
            next
        }
        /^host[[:space:]]*=[[:space:]]*"127\.0\.0\.1"/ { print $0 "  # the Modbus TCP device'"'"'s address on site"; next }
        /^backend[[:space:]]*=[[:space:]]*"sim"/ { print "backend = \"" backend "\""; next }
        /^record[[:space:]]*=/ { next }                   # sim-only pin recording
        { print }
    ' "$SRC/config/demo.toml"
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

install_file() {  # install_file SRC DST MODE: copy unless identical
    if [[ -f "$(r "$2")" ]] && cmp -s "$1" "$(r "$2")"; then ok "$2 is up to date"; return; fi
    act install -D -m "$3" "$1" "$2"
}

MODEL=$(board_model)
KIND=$(board_kind "$MODEL")

if [[ $PRINT_CONFIG -eq 1 ]]; then
    render_config "$KIND"
    exit 0
fi

# ---- refusals before anything happens ---------------------------------------------------------------
if [[ -n "$ROOT" && $DRY -eq 0 ]]; then
    die "INSTALL_ROOT is for --dry-run (tests) only; a real install works on /"
fi
if [[ $DRY -eq 0 && $(id -u) -ne 0 ]]; then
    die "run it as root: sudo $0 $* (or add --dry-run to see what it would do)"
fi
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/$NAME.service" ]] \
    || die "$SRC is not a community-gateway checkout (no pyproject.toml or systemd/$NAME.service)"

[[ $DRY -eq 1 ]] && printf 'dry run: nothing will be changed\n'
printf 'community-gateway installer: checkout %s, prefix %s, board: %s\n' "$SRC" "$PREFIX" "${MODEL:-not a Raspberry Pi}"

# ---- uninstall ----------------------------------------------------------------------------------------
if [[ $UNINSTALL -eq 1 ]]; then
    if [[ -e "$(r "$UNIT_DST")" || -L "$(r "$WANTS")" ]]; then
        act systemctl disable --now "$NAME"
        act rm -f "$UNIT_DST"
        act systemctl daemon-reload
    else
        ok "no unit installed"
    fi
    if [[ "$(readlink "$(r /usr/local/bin/gateway)" 2>/dev/null || true)" == "$VENV/bin/gateway" ]]; then
        act rm -f /usr/local/bin/gateway
    fi
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
stamp=$(source_stamp)
if [[ "$(cat "$(r "$STAMP")" 2>/dev/null || true)" == "$stamp" ]]; then
    ok "package already installed from this checkout (source $stamp)"
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
        if pip_has rpi_lgpio; then ok "rpi-lgpio installed"; else act "$VENV/bin/python" -m pip install rpi-lgpio; fi
        ;;
    pi)
        if pip_has RPi.GPIO; then ok "RPi.GPIO installed"; else act "$VENV/bin/python" -m pip install RPi.GPIO; fi
        ;;
    none) ok "not a Raspberry Pi: no GPIO library (use [gpio] backend = \"sim\")" ;;
esac

# The CLI on PATH for the technician; an existing gateway command that is not ours is left alone.
LINK=/usr/local/bin/gateway
if [[ "$(readlink "$(r "$LINK")" 2>/dev/null || true)" == "$VENV/bin/gateway" ]]; then ok "$LINK -> $VENV/bin/gateway"
elif [[ -e "$(r "$LINK")" || -L "$(r "$LINK")" ]]; then printf 'note: %s exists and is not ours; leaving it\n' "$LINK"
else act ln -s "$VENV/bin/gateway" "$LINK"; fi

# Docs next to the venv: the unit's Documentation= points here.
for doc in README.md hw/README.md hw/wiring.png; do
    [[ -f "$SRC/$doc" ]] && install_file "$SRC/$doc" "$DOC/$doc" 0644
done

# The config: an example only when there is none. Never overwritten, never merged.
if [[ -e "$(r "$CONF")" ]]; then
    ok "keeping the existing $CONF"
else
    [[ -f "$SRC/config/demo.toml" ]] || die "$SRC/config/demo.toml is missing: cannot write an example config"
    [[ -d "$(r "$ETC")" ]] || act install -d -m 0750 -o root -g "$NAME" "$ETC"
    if [[ $DRY -eq 1 ]]; then
        printf 'would: write %s from config/demo.toml (data_dir %s, first bus /dev/ttyAMA0, gpio backend %s), mode 0640 root:%s\n' \
            "$CONF" "$STATE" "$([[ $KIND == none ]] && echo sim || echo rpi)" "$NAME"
        CHANGED=1
    else
        tmp=$(mktemp)
        trap 'rm -f "$tmp"' EXIT
        render_config "$KIND" > "$tmp"
        act install -m 0640 -o root -g "$NAME" "$tmp" "$CONF"
    fi
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
    act systemctl daemon-reload
fi
if [[ -L "$(r "$WANTS")" ]] || { [[ -z "$ROOT" ]] && systemctl is-enabled --quiet "$NAME" 2>/dev/null; }; then
    ok "$NAME is enabled at boot"
else
    act systemctl enable "$NAME"
fi
if [[ $CHANGED -eq 1 ]]; then
    act systemctl restart "$NAME"   # starts it, or picks up the new package and unit
else
    act systemctl start "$NAME"     # nothing changed: a no-op when it is already running
fi

cat <<EOF

next steps:
  1. edit $CONF for this site (buses, sensors, outputs, rules, uplink)
  2. gateway check -c $CONF    (validates; nothing starts on a bad config)
  3. sudo systemctl restart $NAME
  4. gateway status    (sensors, alarms, outputs, uplink, outbox)
  5. journalctl -u $NAME -f    (the daemon's log)
  hardware and bench test: $DOC/hw/README.md
EOF
if [[ $RELOGIN -eq 1 ]]; then
    printf '  %s %s added to the group %s: log out and in again before using the gateway CLI\n' \
        "$SUDO_USER" "$([[ $DRY -eq 1 ]] && echo would be || echo was)" "$NAME"
fi
if [[ "$KIND" == pi ]]; then
    printf '  on a Pi 3/4: put dtoverlay=disable-bt in /boot/firmware/config.txt so /dev/ttyAMA0 is the PL011 UART (see hw/README.md)\n'
fi
