#!/usr/bin/env bash
# Build the serving image without Docker and prove it serves (docs/deployment.md, "Container
# test"). Needs root, podman and (unless BASE_IMAGE exists) debootstrap; network to Debian and
# PyPI for the build. Steps:
#   1. a local base image: debootstrap --variant=minbase bookworm, imported as BASE_IMAGE
#      (no registry is reachable here, so python:3.11-slim cannot be pulled)
#   2. podman build --target serving with that base (the Dockerfile installs python3 from apt)
#   3. the image's file system (podman image mount, read-only): no torch, no pip, no compilers
#   4. a model made with the project's own commands, bind-mounted read-only at /models
#   5. the image's ENTRYPOINT with the image's Env, as the image's User, chrooted into its
#      read-only root, in a private mount namespace with only /var/lib/softsensor (state) and
#      /tmp writable; ready, a prediction (200 + numeric estimate), a lab result stored in the
#      state volume, the image's own HEALTHCHECK command, /metrics, and a hot swap: a new
#      champion promoted in the registry is picked up by the watcher through the read-only mount
#   6. with TRAINING=1 only: build the training target too and run the CronJob's
#      `softsensor retrain` in it against the same registry (TORCH_WHEELS=DIR: a directory
#      holding the torch 2.13.0+cpu wheel, else PyPI's torch 2.13.0 is downloaded)
#   7. stop, unmount, write a JSON report (REPORT, default deploy/container-report.json)
set -euo pipefail
cd "$(dirname "$0")/.."
STARTED=$(date +%s)

BIN=${BIN:-.venv/bin}
BASE_IMAGE=${BASE_IMAGE:-localhost/bookworm-min:local}
IMAGE=${IMAGE:-localhost/softsensor:serving}
TRAINING=${TRAINING:-0}
TRAINING_IMAGE=${TRAINING_IMAGE:-localhost/softsensor:training}
TORCH_WHEELS=${TORCH_WHEELS:-}
REPORT=${REPORT:-deploy/container-report.json}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}

die() { echo "container_test: $*" >&2; exit 1; }
step() { echo "== $*"; }
[[ $(id -u) == 0 ]] || die "must run as root (podman image mount, chroot, mount namespaces)"
for tool in podman chroot unshare curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -x $BIN/softsensor ]] || die "$BIN/softsensor not found: run make install first"

WORK=$(mktemp -d /tmp/softsensor-container.XXXXXX)
MOUNTED=()
SERVER=""
cleanup() {
    local code=$? image
    if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    for image in "${MOUNTED[@]}"; do
        podman image unmount "$image" >/dev/null 2>&1 || true
    done
    if [[ -d $WORK/rootfs ]]; then  # debootstrap may leave proc/sys mounted after a failure
        umount -R "$WORK/rootfs/proc" "$WORK/rootfs/sys" 2>/dev/null || true
    fi
    if [[ $code != 0 && -f $WORK/server.log ]]; then
        echo "--- server log (last 40 lines)" >&2
        tail -n 40 "$WORK/server.log" >&2
    fi
    rm -rf "$WORK"
    exit "$code"
}
trap cleanup EXIT INT TERM

# podman build with this machine's CA bundle beside the image's own (pip's TLS).
build() {
    local target=$1 tag=$2 log=$3
    shift 3
    local ca=()
    [[ -f $HOST_CA ]] && ca=(-v "$HOST_CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
    podman build --isolation chroot --format docker --target "$target" \
        --build-arg BASE="$BASE_IMAGE" "${ca[@]}" "$@" -t "$tag" . >"$log" 2>&1 \
        || { tail -n 40 "$log" >&2; die "podman build --target $target failed"; }
}

# The image's run configuration (entrypoint + cmd, env, user, working dir, health check) as
# NUL-separated files under DIR.
image_config() {
    local image=$1 dir=$2
    mkdir -p "$dir"
    podman image inspect "$image" >"$dir/inspect.json"
    "$BIN/python" - "$dir" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
image = json.loads((out / "inspect.json").read_text())[0]
config = image["Config"]
test = (image.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or []
(out / "entrypoint").write_text("\0".join(config["Entrypoint"] + (config.get("Cmd") or [])))
(out / "env").write_text("\0".join(config["Env"]))
(out / "healthcheck").write_text("\0".join(test))
(out / "user").write_text(config.get("User") or "")
(out / "workdir").write_text(config.get("WorkingDir") or "/")
PY
}

# Run a command in a mounted image as a container runtime would, without one: a private mount
# namespace (every bind vanishes with the process), the image's root as mounted (read-only),
# /proc, /dev, a tmpfs /tmp, binds given as MODE:SOURCE:TARGET (MODE ro or rw), then chroot
# as USERSPEC into WORKDIR with exactly the environment given (env -i).
# It execs: call it in a subshell, `(in_image ...)`, whose pid is then the command's own.
# usage: in_image ROOT USERSPEC WORKDIR [BIND...] -- [NAME=VALUE...] COMMAND [ARG...]
in_image() {
    exec unshare --mount --propagation private -- /bin/bash -euc '
        root=$1 userspec=$2 workdir=$3
        shift 3
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o size=256m,mode=1777 tmpfs "$root/tmp"
        while [[ $1 != -- ]]; do
            IFS=: read -r mode source target <<<"$1"
            mount --bind "$source" "$root$target"
            if [[ $mode == ro ]]; then mount -o remount,bind,ro "$root$target"; fi
            shift
        done
        shift
        exec chroot --userspec="$userspec" --groups="${userspec#*:}" "$root" \
            /usr/bin/env -i -C "$workdir" "$@"
    ' in_image "$@"
}

# ------------------------------------------------------------------ 1. base image
if podman image exists "$BASE_IMAGE"; then
    step "base image $BASE_IMAGE exists"
else
    command -v debootstrap >/dev/null || die "debootstrap is not installed (needed for $BASE_IMAGE)"
    step "debootstrap bookworm (minbase) -> $BASE_IMAGE"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # What slim images leave out: package caches and lists, docs, manuals, translations.
    rm -rf "$WORK"/rootfs/var/cache/apt/*.bin "$WORK"/rootfs/var/cache/apt/archives/*.deb \
        "$WORK"/rootfs/var/lib/apt/lists/* "$WORK"/rootfs/usr/share/{doc,man,info,locale}/*
    tar -C "$WORK/rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null 2>&1
    rm -rf "$WORK/rootfs"
fi

# ------------------------------------------------------------------ 2. build
step "podman build --target serving -> $IMAGE"
build_started=$(date +%s)
build serving "$IMAGE" "$WORK/build.log"
BUILD_SECONDS=$(($(date +%s) - build_started))
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $SIZE bytes ($((SIZE / 1000000)) MB), built in ${BUILD_SECONDS}s"
image_config "$IMAGE" "$WORK/serving"
USERSPEC=$(<"$WORK/serving/user")
[[ $USERSPEC =~ ^[1-9][0-9]*:[0-9]+$ ]] || die "image user is '$USERSPEC', not a numeric non-root uid:gid"
UID_=${USERSPEC%%:*}
GID_=${USERSPEC##*:}
WORKDIR=$(<"$WORK/serving/workdir")
mapfile -d '' -t ENTRYPOINT <"$WORK/serving/entrypoint"
mapfile -d '' -t IMAGE_ENV <"$WORK/serving/env"
mapfile -d '' -t HEALTHCHECK <"$WORK/serving/healthcheck"
[[ ${HEALTHCHECK[0]:-} == CMD ]] || die "no exec-form HEALTHCHECK in the image (built with --format docker?)"

# ------------------------------------------------------------------ 3. what is (not) inside
ROOT=$(podman image mount "$IMAGE")
MOUNTED+=("$IMAGE")
step "image mounted at $ROOT"
if touch "$ROOT/.write-test" 2>/dev/null; then
    rm -f "$ROOT/.write-test"
    die "the mounted image root is writable: the read-only-root check would prove nothing"
fi
mapfile -t TORCH_PATHS < <(find "$ROOT" -xdev \( -path '*/site-packages/torch' \
    -o -path '*/site-packages/torch-*' -o -path '*/dist-packages/torch' \) -print)
((${#TORCH_PATHS[@]} == 0)) || die "torch found in the image: ${TORCH_PATHS[*]}"
if chroot --userspec="$USERSPEC" "$ROOT" /opt/venv/bin/python -c 'import torch' 2>"$WORK/torch.err"; then
    die "import torch succeeded in the serving image"
fi
TORCH_ERROR=$(tail -n 1 "$WORK/torch.err")
echo "torch absent: no torch directory in site-packages; import torch -> $TORCH_ERROR"
if chroot "$ROOT" /opt/venv/bin/python -c 'import pip' 2>/dev/null; then
    die "pip is installed in the serving venv"
fi
for tool in gcc cc c++ g++ clang make ld; do
    [[ ! -e $ROOT/usr/bin/$tool && ! -e $ROOT/usr/local/bin/$tool ]] \
        || die "build tool $tool in the serving image"
done

# ------------------------------------------------------------------ 4. a model, made here
step "simulate + train + register column_a (2 days, 20 epochs)"
DATA=$WORK/data
MODELS=$WORK/models
STATE=$WORK/state
mkdir -p "$DATA" "$MODELS" "$STATE"
chown "$UID_:$GID_" "$STATE"
"$BIN/softsensor" simulate --days 2 --seed 0 --out "$DATA/column_a.csv" >/dev/null
"$BIN/softsensor" train --spec "$DATA/column_a.yaml" --data "$DATA/column_a.csv" --epochs 20 \
    --register column_a --registry "$MODELS" --out "$WORK/run1" --quiet >/dev/null
champion() { "$BIN/softsensor" models list --registry "$MODELS" | awk '$1 == "*" {print $3}'; }
FIRST=$(champion)
# Records of the last 21 samples (the model's lags reach 20 min back) and a lab result for
# the newest one: the sample time of an estimate the service will have made.
"$BIN/python" - "$DATA/column_a.csv" "$WORK" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
frame = pd.read_csv(sys.argv[1]).tail(21)
out = Path(sys.argv[2])
signals = [c for c in frame.columns if c[0] in "TFLVDB" and len(c) <= 3]
records = [{"timestamp": row["timestamp"], "values": {c: float(row[c]) for c in signals}}
           for _, row in frame.iterrows()]
(out / "predict.json").write_text(json.dumps({"model": "column_a", "records": records}))
last = frame.iloc[-1]
lab = {"model": "column_a",
       "results": [{"sample_time": last["timestamp"], "value": float(last["true_xB"])}]}
(out / "lab.json").write_text(json.dumps(lab))
PY

# ------------------------------------------------------------------ 5. run the image's entrypoint
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The simulated data is dated 2026-01: lab results that old would be rejected as late.
RUN_ENV=("${IMAGE_ENV[@]}" SOFTSENSOR_HOST=127.0.0.1 "SOFTSENSOR_PORT=$PORT"
    SOFTSENSOR_WATCH_INTERVAL_S=1 SOFTSENSOR_LAB_MAX_AGE_S=1e9)
step "serve: ${ENTRYPOINT[*]} as $USERSPEC on 127.0.0.1:$PORT (read-only root)"
# Only the state volume and /tmp are writable, as in deploy/k8s (readOnlyRootFilesystem +
# emptyDir /tmp) and deploy/compose.yaml (read_only + tmpfs); /models is read-only.
(in_image "$ROOT" "$USERSPEC" "$WORKDIR" "ro:$MODELS:/models" "rw:$STATE:/var/lib/softsensor" \
    -- "${RUN_ENV[@]}" "${ENTRYPOINT[@]}") >"$WORK/server.log" 2>&1 &
SERVER=$!
URL=http://127.0.0.1:$PORT
serve_started=$(date +%s%N)
for _ in $(seq 1 300); do
    curl -sf "$URL/v2/health/ready" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || die "the server exited before it was ready"
    sleep 0.1
done
curl -sf "$URL/v2/health/ready" >/dev/null || die "not ready after 30 s"
READY_MS=$((($(date +%s%N) - serve_started) / 1000000))
echo "ready after ${READY_MS} ms"
SERVER_UID=$(ps -o uid= -p "$SERVER" | tr -d ' ')
[[ $SERVER_UID == "$UID_" ]] || die "the server runs as uid $SERVER_UID, not the image's $UID_"

PREDICT_STATUS=$(curl -s -o "$WORK/predict.out" -w '%{http_code}' -X POST "$URL/v1/predict" \
    -H 'content-type: application/json' --data-binary @"$WORK/predict.json")
[[ $PREDICT_STATUS == 200 ]] || die "predict answered $PREDICT_STATUS: $(cat "$WORK/predict.out")"
LAB_STATUS=$(curl -s -o "$WORK/lab.out" -w '%{http_code}' -X POST "$URL/v1/lab-results" \
    -H 'content-type: application/json' --data-binary @"$WORK/lab.json")
[[ $LAB_STATUS == 200 ]] || die "lab-results answered $LAB_STATUS: $(cat "$WORK/lab.out")"
[[ -s $STATE/lab_results.sqlite ]] || die "no lab_results.sqlite in the state volume"
STATE_OWNER=$(stat -c %u "$STATE/lab_results.sqlite")
[[ $STATE_OWNER == "$UID_" ]] || die "state written as uid $STATE_OWNER, not $UID_"

# The image's own HEALTHCHECK command, in the image as its user, with the image's env.
chroot --userspec="$USERSPEC" "$ROOT" /usr/bin/env -i "${RUN_ENV[@]}" "${HEALTHCHECK[@]:1}" \
    || die "the image's HEALTHCHECK command failed while the service was ready"
curl -sf "$URL/metrics" >"$WORK/metrics.txt" || die "GET /metrics failed"
grep -q '^softsensor_model_ready{model="column_a"} 1.0$' "$WORK/metrics.txt" \
    || die "/metrics does not report column_a ready"

step "hot swap: register and promote a second version while serving"
"$BIN/softsensor" train --spec "$DATA/column_a.yaml" --data "$DATA/column_a.csv" --epochs 20 \
    --seed 1 --register column_a --registry "$MODELS" --out "$WORK/run2" --quiet >/dev/null
SECOND=$("$BIN/softsensor" models list --registry "$MODELS" | awk -v first="$FIRST" '$NF != first {print $NF}')
[[ -n $SECOND && $SECOND != "$FIRST" ]] || die "no second version registered"
"$BIN/softsensor" models promote column_a "$SECOND" --registry "$MODELS" >/dev/null
SWAPPED=""
for _ in $(seq 1 100); do
    if curl -sf "$URL/v1/models" | grep -q "\"version\":\"$SECOND\""; then SWAPPED=1; break; fi
    sleep 0.1
done
[[ -n $SWAPPED ]] || die "the watcher did not pick up champion $SECOND through the read-only mount"
SWAP_STATUS=$(curl -s -o "$WORK/predict2.out" -w '%{http_code}' -X POST "$URL/v1/predict" \
    -H 'content-type: application/json' --data-binary @"$WORK/predict.json")
[[ $SWAP_STATUS == 200 ]] || die "predict after the swap answered $SWAP_STATUS"

kill -TERM "$SERVER"
SERVER_EXIT=0
wait "$SERVER" || SERVER_EXIT=$?
SERVER=""
# uvicorn finishes its graceful shutdown, then re-raises SIGTERM: 143 (128 + 15) is a clean stop.
[[ $SERVER_EXIT == 0 || $SERVER_EXIT == 143 ]] || die "the server exited with $SERVER_EXIT on SIGTERM"
grep -q 'Application shutdown complete' "$WORK/server.log" || die "no graceful shutdown on SIGTERM"

# ------------------------------------------------------------------ 6. the retraining job (opt-in)
TRAINING_JSON=null
if [[ $TRAINING == 1 ]]; then
    step "podman build --target training -> $TRAINING_IMAGE"
    torch_args=()
    if [[ -n $TORCH_WHEELS ]]; then
        torch_args=(-v "$TORCH_WHEELS:/run/host-wheels:ro" --build-arg PIP_FIND_LINKS=/run/host-wheels
            --build-arg TORCH=cpu)
    fi
    train_build_started=$(date +%s)
    build training "$TRAINING_IMAGE" "$WORK/build-training.log" "${torch_args[@]}"
    TRAIN_BUILD_SECONDS=$(($(date +%s) - train_build_started))
    TRAIN_SIZE=$(podman image inspect --format '{{.Size}}' "$TRAINING_IMAGE")
    image_config "$TRAINING_IMAGE" "$WORK/training"
    TUSER=$(<"$WORK/training/user")
    mapfile -d '' -t TENTRY <"$WORK/training/entrypoint"
    mapfile -d '' -t TENV <"$WORK/training/env"
    TROOT=$(podman image mount "$TRAINING_IMAGE")
    MOUNTED+=("$TRAINING_IMAGE")
    step "retrain in the training image as $TUSER (the CronJob's command)"
    JOB=$WORK/job
    mkdir -p "$JOB"
    "$BIN/softsensor" simulate --days 2 --seed 1 --out "$JOB/new.csv" >/dev/null
    chown -R "$TUSER" "$MODELS" "$JOB"
    RETRAIN_EXIT=0
    (in_image "$TROOT" "$TUSER" /var/lib/softsensor "rw:$MODELS:/models" "rw:$JOB:/var/lib/softsensor" \
        -- "${TENV[@]}" "${TENTRY[0]}" retrain --name column_a --spec /var/lib/softsensor/new.yaml \
        --data /var/lib/softsensor/new.csv --registry /models --report-dir /var/lib/softsensor/reports) \
        >"$WORK/retrain.log" 2>&1 || RETRAIN_EXIT=$?
    cat "$WORK/retrain.log"
    [[ $RETRAIN_EXIT == 0 || $RETRAIN_EXIT == 3 ]] || die "retrain exited with $RETRAIN_EXIT"
    RETRAIN_REPORT=$(find "$JOB/reports" -name 'column_a-*.json' | head -n 1)
    [[ -n $RETRAIN_REPORT ]] || die "retrain wrote no report"
    podman image unmount "$TRAINING_IMAGE" >/dev/null
    TRAINING_JSON=$("$BIN/python" - "$RETRAIN_REPORT" <<PY
import json, sys
r = json.loads(open(sys.argv[1]).read())
print(json.dumps({"image": "$TRAINING_IMAGE", "size_bytes": $TRAIN_SIZE,
                  "size_mb": round($TRAIN_SIZE / 1e6, 1), "build_seconds": $TRAIN_BUILD_SECONDS,
                  "torch": "${TORCH_WHEELS:+2.13.0+cpu from $TORCH_WHEELS}" or "2.13.0 from PyPI",
                  "retrain_exit_code": $RETRAIN_EXIT, "decision": r["decision"],
                  "champion_rmse": r["champion_rmse"], "challenger_rmse": r["challenger_rmse"]}))
PY
)
fi
podman image unmount "$IMAGE" >/dev/null
MOUNTED=()

# ------------------------------------------------------------------ 7. report
TOTAL_SECONDS=$(($(date +%s) - STARTED))
mkdir -p "$(dirname "$REPORT")"
"$BIN/python" - "$WORK" "$REPORT" <<PY
import json, math, sys
from pathlib import Path
work, report = Path(sys.argv[1]), Path(sys.argv[2])
answer = json.loads((work / "predict.out").read_text())
after = json.loads((work / "predict2.out").read_text())
lab = json.loads((work / "lab.out").read_text())
estimate = answer["rows"][-1]["estimate"]
if not (isinstance(estimate, float) and math.isfinite(estimate)):
    sys.exit(f"estimate is not a finite number: {estimate!r}")
outcome = lab["outcomes"][0]
if not outcome["stored"]:
    sys.exit(f"the lab result was not stored: {outcome!r}")
if after["model_version"] != "$SECOND":
    sys.exit(f"after the swap {after['model_version']} answered, not $SECOND")
body = {
    "image": "$IMAGE",
    "base_image": "$BASE_IMAGE",
    "target": "serving",
    "size_bytes": $SIZE,
    "size_mb": round($SIZE / 1e6, 1),
    "build_seconds": $BUILD_SECONDS,
    "total_seconds": $TOTAL_SECONDS,
    "user": "$USERSPEC",
    "server_process_uid": $SERVER_UID,
    "entrypoint": (work / "serving" / "entrypoint").read_text().split("\0"),
    "read_only_root": True,
    "torch": {"site_packages_dirs": [], "import_error": """$TORCH_ERROR"""},
    "pip_in_image": False,
    "build_tools_in_image": [],
    "ready_seconds": $READY_MS / 1000,
    "healthcheck_passed": True,
    "predict": {"status": $PREDICT_STATUS, "model_version": answer["model_version"],
                "estimate": estimate, "unit": answer["unit"], "rows": len(answer["rows"])},
    "lab_result": {"status": $LAB_STATUS, "stored": outcome["stored"],
                   "accepted": outcome["accepted"], "reason": outcome["reason"],
                   "state_file_owner_uid": $STATE_OWNER},
    "hot_swap": {"from": "$FIRST", "to": "$SECOND", "predict_status": $SWAP_STATUS,
                 "served_after": after["model_version"]},
    "sigterm": {"exit_code": $SERVER_EXIT, "graceful_shutdown": True},
    "training": json.loads("""$TRAINING_JSON"""),
}
report.write_text(json.dumps(body, indent=2) + "\n")
print(json.dumps(body["predict"]))
PY
echo "container test passed in ${TOTAL_SECONDS}s (image $((SIZE / 1000000)) MB); report: $REPORT"
