#!/bin/bash
# CloudPulse instance bootstrap: EC2 user data for Amazon Linux 2023.
#
# Installs the static cloudpulse-instance binary from S3 after checking its
# SHA-256, runs it as a dedicated system user under a hardened systemd unit,
# and starts it. The deployment renders the five placeholder values below
# (cloudpulse_instance::user_data::render checks they are shell-safe).
#
# Test hooks, never set on EC2 (cloud-init runs this with a clean
# environment): CLOUDPULSE_ROOT installs under another root,
# CLOUDPULSE_BINARY_FILE copies a local file instead of downloading, and
# CLOUDPULSE_NO_SYSTEM=1 skips useradd, chown and systemctl.
set -euo pipefail

BUCKET='__CLOUDPULSE_BUCKET__'
KEY='__CLOUDPULSE_KEY__'
SHA256='__CLOUDPULSE_SHA256__'
REGION='__CLOUDPULSE_REGION__'
ASG_NAME='__CLOUDPULSE_ASG_NAME__'

PORT=3000
SERVICE=cloudpulse-instance
SERVICE_USER=cloudpulse
ROOT="${CLOUDPULSE_ROOT:-}"
BIN="$ROOT/usr/local/bin/$SERVICE"
CONF_DIR="$ROOT/etc/cloudpulse"
UNIT="$ROOT/etc/systemd/system/$SERVICE.service"
NO_SYSTEM="${CLOUDPULSE_NO_SYSTEM:-0}"

log() { echo "cloudpulse-user-data: $*" >&2; }

case "$BUCKET$KEY$SHA256$REGION$ASG_NAME" in
  *__CLOUDPULSE_*) log "template placeholders were not rendered"; exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
download="$work/$SERVICE"

# 1. Fetch the binary (the instance profile grants s3:GetObject on it).
if [ -n "${CLOUDPULSE_BINARY_FILE:-}" ]; then
  cp "$CLOUDPULSE_BINARY_FILE" "$download"
else
  for attempt in 1 2 3 4 5; do
    if aws s3 cp --only-show-errors --region "$REGION" "s3://$BUCKET/$KEY" "$download"; then
      break
    fi
    if [ "$attempt" -eq 5 ]; then
      log "download of s3://$BUCKET/$KEY failed"
      exit 1
    fi
    sleep $((attempt * 2))
  done
fi

# 2. Refuse anything but the exact build the deployment published.
actual="$(sha256sum "$download" | cut -d' ' -f1)"
if [ "$actual" != "$SHA256" ]; then
  log "SHA-256 mismatch for s3://$BUCKET/$KEY: expected $SHA256, got $actual"
  exit 1
fi

# 3. A system user with no shell, no home and no other purpose.
if [ "$NO_SYSTEM" != 1 ] && ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent \
    --shell /sbin/nologin --user-group "$SERVICE_USER"
fi

# 4. Binary owned by root, not writable by the service.
install -d -m 0755 "$(dirname "$BIN")"
install -m 0755 "$download" "$BIN"

# 5. Settings, readable by the service's group only.
install -d -m 0750 "$CONF_DIR"
cat > "$CONF_DIR/instance.env" <<ENV
# Written by CloudPulse user data; read by $SERVICE.
ASG_NAME=$ASG_NAME
AWS_REGION=$REGION
HOST=0.0.0.0
PORT=$PORT
DRAIN_GRACE_MS=5000
DRAIN_TIMEOUT_MS=15000
ENV
chmod 0640 "$CONF_DIR/instance.env"
if [ "$NO_SYSTEM" != 1 ]; then
  chown root:"$SERVICE_USER" "$CONF_DIR" "$CONF_DIR/instance.env"
fi

# 6. The unit: restart on failure, SIGTERM drains (TimeoutStopSec exceeds
#    DRAIN_TIMEOUT_MS), and the process sees as little of the host as it can.
install -d -m 0755 "$(dirname "$UNIT")"
cat > "$UNIT" <<UNIT
[Unit]
Description=CloudPulse instance health and dashboard service
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=$SERVICE_USER
Group=$SERVICE_USER
EnvironmentFile=/etc/cloudpulse/instance.env
Environment=CLOUDPULSE_ENV_FILE=/etc/cloudpulse/instance.env
ExecStart=/usr/local/bin/$SERVICE
# /run/cloudpulse-instance: where "$SERVICE fail-health" (run as root by
# SSM Run Command) leaves the deadline the health check reads.
RuntimeDirectory=$SERVICE
RuntimeDirectoryMode=0755
Restart=on-failure
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=25
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
UMask=0077
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$UNIT"

# 7. Start it and wait for the first healthy answer (for the boot log).
if [ "$NO_SYSTEM" != 1 ]; then
  systemctl daemon-reload
  systemctl enable --now "$SERVICE"
  for _ in $(seq 1 30); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
      log "$SERVICE is healthy"
      exit 0
    fi
    sleep 1
  done
  log "$SERVICE did not become healthy within 30 s"
  systemctl status "$SERVICE" --no-pager >&2 || true
  exit 1
fi
log "installed under ${ROOT:-/} (system steps skipped)"
