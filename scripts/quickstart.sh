#!/usr/bin/env bash
# The main job end to end on the built-in default, for a newcomer on a fresh machine:
# simulate a week of Column A -> train + prune (CA) -> export + register -> serve -> predict.
# Serves until Ctrl-C; with SERVE=0 it stops after the demonstration prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}
PORT=${PORT:-8000}
BIN=.venv/bin
mkdir -p "$RUN"

$BIN/softsensor simulate --days 7 --seed 0 --out "$RUN/column_a.csv"
$BIN/softsensor train --spec "$RUN/column_a.yaml" --data "$RUN/column_a.csv" \
    --method ca --seed 0 --out "$RUN/ca" --register column_a --promote --registry "$RUN/models"
$BIN/softsensor models list --registry "$RUN/models"

# A request with the last 21 samples of the file: the model's lags reach 20 min back.
$BIN/python - "$RUN" <<'PY'
import json, sys
import pandas as pd
run = sys.argv[1]
frame = pd.read_csv(f"{run}/column_a.csv").tail(21)
signals = [c for c in frame.columns if c.startswith(("T", "F", "L", "V", "D", "B")) and len(c) <= 3]
body = {"model": "column_a", "timestamp": frame["timestamp"].tolist(),
        "columns": {c: frame[c].tolist() for c in signals}}
with open(f"{run}/request.json", "w") as fh:
    json.dump(body, fh)
PY

$BIN/softsensor serve --registry "$RUN/models" --state-dir "$RUN/state" --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break
    sleep 0.2
done

echo
echo "curl -s -X POST http://127.0.0.1:$PORT/v1/predict -H 'content-type: application/json' -d @$RUN/request.json"
curl -sf -X POST "http://127.0.0.1:$PORT/v1/predict" -H 'content-type: application/json' \
    -d @"$RUN/request.json" > "$RUN/response.json"
$BIN/python - "$RUN/response.json" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))  # a columnar request gets a columnar answer
flags = [f for f in body["flags"] if f["row"] == len(body["estimate"]) - 1]
print(f"model {body['model']} {body['model_version']}: at {body['timestamp'][-1]} the bottoms "
      f"impurity is estimated at {body['estimate_corrected'][-1]:.3f} {body['unit']} "
      f"(95% interval {body['interval_low'][-1]:.3f} .. {body['interval_high'][-1]:.3f}); "
      f"frozen sensors {body['frozen'] or 'none'}; row flags {flags or 'none'}")
PY
echo "metrics: curl -s http://127.0.0.1:$PORT/metrics ; API docs: http://127.0.0.1:$PORT/docs"
if [[ "${SERVE:-1}" == "1" ]]; then
    echo "serving on http://127.0.0.1:$PORT (Ctrl-C to stop)"
    wait $SERVER
fi
