#!/usr/bin/env bash
# Loopback load test of POST /webhook (see docs/benchmarks.md).
# Usage: benches/wrk/run.sh [seconds] [connections]
# Needs wrk (Debian: apt-get install wrk) and a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-20}"
CONNS="${2:-64}"
BIN="${CARGO_TARGET_DIR:-target}/release/orchestrator"
[ -x "$BIN" ] || cargo build --release
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
SECRET=bench-secret
python3 - "$WORK" "$SECRET" <<'PY'
import hashlib, hmac, json, sys
work, secret = sys.argv[1], sys.argv[2]
p = json.load(open("tests/fixtures/github/webhooks/issues/labeled.1.json"))
p["installation"] = {"id": 1}
p["label"]["name"] = "orchestrate"
body = json.dumps(p, separators=(",", ":")).encode()
body = body[:-1] + b',"padding":"' + b"x" * max(0, 10240 - len(body) - 14) + b'"}'
open(f"{work}/body.json", "wb").write(body)
open(f"{work}/sig", "w").write("sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() + "\n")
print(f"body: {len(body)} bytes")
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATABASE_URL="sqlite://$WORK/bench.db" GITHUB_WEBHOOK_SECRET=$SECRET ORCH_LISTEN=127.0.0.1:$PORT \
  ORCH_DATA_DIR="$WORK" RUST_LOG=warn "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
TICKS=$(getconf CLK_TCK)
BEFORE=$(cpu)
BODY_FILE="$WORK/body.json" SIG_FILE="$WORK/sig" wrk -t2 -c"$CONNS" -d"${SECS}s" --latency \
  -s benches/wrk/webhook.lua "http://127.0.0.1:$PORT/webhook" | tee "$WORK/wrk.txt"
AFTER=$(cpu)
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
kill -TERM "$PID"; wait "$PID" || true
N=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from deliveries').fetchone()[0])" "$WORK/bench.db")
python3 - "$N" "$BEFORE" "$AFTER" "$TICKS" "$SECS" "$RSS" <<'PY'
import sys
n, before, after, ticks, secs, rss = map(float, sys.argv[1:])
cpu_s = (after - before) / ticks
print(f"recorded deliveries: {int(n)} ({n/secs:.0f}/s)")
print(f"server CPU: {cpu_s:.2f} s = {cpu_s/n*1000:.4f} ms per delivery")
print(f"server peak RSS: {rss/1024:.1f} MiB")
PY
