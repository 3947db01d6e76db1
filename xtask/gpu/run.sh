#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU, in the root of a Strata checkout, from
# the folder `cargo xtask gpu-check` made (bin/*.xz + this script). No Rust toolchain is needed:
# it needs the NVIDIA driver, and a Python with torch (CUDA) and torchvision for the baselines
# and for NVRTC.
#
#     bash gpu-check/run.sh [RESULTS_DIR]       (default: $OUT, else gpu-check/results)
#
# Every step writes RESULTS_DIR/STEP.out, .err and .rc; at the end all figures, and the
# errors of failed steps, are gathered into RESULTS_DIR/gpu.json (and the step files removed).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESULTS=${1:-${OUT:-$HERE/results}}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
STEPS=${BENCH_STEPS:-200}
export STRATA_DATA_DIR="$ROOT/datasets"
cd "$ROOT"

BIN=$(mktemp -d)
for f in "$HERE"/bin/*.xz; do
    name=$(basename "$f" .xz)
    xz -dc "$f" > "$BIN/$name" && chmod +x "$BIN/$name"
done

# torch's lib/ (LibTorch for the tch binary) and the NVIDIA wheels' libraries (NVRTC for cuda).
TORCH_LIB=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
NV_LIBS=$("$PY" - <<'PYEOF' 2>/dev/null
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for f in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
PYEOF
)
export LD_LIBRARY_PATH="${NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    lscpu | grep -E "Model name|^CPU\(s\)"
    ls "$BIN"
} > "$RESULTS/machine.txt" 2>&1

# step NAME COMMAND...: runs with a timeout, keeps stdout, stderr and the exit code.
step() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    local t0
    t0=$(date +%s%N)
    timeout "$STEP_TIMEOUT" "$@" > "$RESULTS/$name.out" 2> "$RESULTS/$name.err"
    local rc=$?
    echo "$rc $(( ($(date +%s%N) - t0) / 1000000 ))" > "$RESULTS/$name.rc"
    tail -n 2 "$RESULTS/$name.err" >&2
    tail -n 1 "$RESULTS/$name.out" >&2
}

BENCH="--format json --steps $STEPS --warmup 20"
RESNET="--format json --steps 30 --warmup 5"
if [ -x "$BIN/strata-cuda" ]; then
    step cuda-selftest "$BIN/strata-cuda" selftest --backend cuda --format json
    step cuda-cnn-train-b64 "$BIN/strata-cuda" bench cnn-train --backend cuda $BENCH --batch-size 64
    step cuda-cnn-train-b256 "$BIN/strata-cuda" bench cnn-train --backend cuda $BENCH --batch-size 256
    step cuda-resnet18-infer-b8 "$BIN/strata-cuda" bench resnet18-infer --backend cuda $RESNET --batch-size 8
    step cuda-resnet18-train-b8 "$BIN/strata-cuda" bench resnet18-train --backend cuda $RESNET --batch-size 8
    step cuda-resnet18-train-b64 "$BIN/strata-cuda" bench resnet18-train --backend cuda $RESNET --batch-size 64
    # The same binary on the GPU machine's CPU cores.
    step flex-cnn-train-b64 "$BIN/strata-cuda" bench cnn-train --backend flex --format json --steps 50 --warmup 10
    step flex-resnet18-train-b8 "$BIN/strata-cuda" bench resnet18-train --backend flex --format json --steps 10 --warmup 3
fi
REF=benches/reference
step pytorch-cuda-cnn-train-b64 "$PY" $REF/cnn_train.py --device cuda --steps "$STEPS" --warmup 20 --batch-size 64
step pytorch-cuda-cnn-train-b256 "$PY" $REF/cnn_train.py --device cuda --steps "$STEPS" --warmup 20 --batch-size 256
step pytorch-cuda-resnet18-infer-b8 "$PY" $REF/resnet18_infer.py --device cuda --steps 30 --warmup 5 --batch-size 8
step pytorch-cuda-resnet18-train-b8 "$PY" $REF/resnet18_train.py --device cuda --steps 30 --warmup 5 --batch-size 8
step pytorch-cuda-resnet18-train-b64 "$PY" $REF/resnet18_train.py --device cuda --steps 30 --warmup 5 --batch-size 64
step pytorch-cpu-cnn-train-b64 "$PY" $REF/cnn_train.py --steps 50 --warmup 10
step pytorch-cpu-resnet18-train-b8 "$PY" $REF/resnet18_train.py --steps 10 --warmup 3
if [ -x "$BIN/strata-tch" ]; then
    # Built against LibTorch 2.9; run against the torch found here.
    export LD_LIBRARY_PATH="$TORCH_LIB:$LD_LIBRARY_PATH"
    step tch-selftest "$BIN/strata-tch" selftest --backend tch --device-index 0 --format json
    step tch-cuda-cnn-train-b64 "$BIN/strata-tch" bench cnn-train --backend tch --device-index 0 $BENCH --batch-size 64
    step tch-cuda-resnet18-train-b8 "$BIN/strata-tch" bench resnet18-train --backend tch --device-index 0 $RESNET --batch-size 8
fi

# Every step's last JSON line (or the end of its stderr), in one file.
"$PY" - "$RESULTS" <<'PYEOF'
import json, os, sys
results = sys.argv[1]
out = {"machine": open(os.path.join(results, "machine.txt")).read().splitlines(), "steps": {}}
for name in sorted(f[:-3] for f in os.listdir(results) if f.endswith(".rc")):
    rc, ms = open(os.path.join(results, name + ".rc")).read().split()
    entry = {"rc": int(rc), "seconds": int(ms) / 1000}
    for line in reversed(open(os.path.join(results, name + ".out"), errors="replace").read().splitlines()):
        try:
            entry["result"] = json.loads(line)
            break
        except ValueError:
            pass
    if int(rc) != 0:
        err = open(os.path.join(results, name + ".err"), errors="replace").read().strip().splitlines()
        entry["error"] = err[:8] + (["..."] + err[-4:] if len(err) > 12 else err[8:])
    out["steps"][name] = entry
with open(os.path.join(results, "gpu.json"), "w") as f:
    json.dump(out, f, indent=1)
# Only gpu.json is needed from here on: fewer files travel back from the GPU machine.
for name in out["steps"]:
    for ext in (".out", ".err", ".rc"):
        os.remove(os.path.join(results, name + ext))
summary = {}
for k, v in out["steps"].items():
    r = v.get("result", {})
    summary[k] = [v["rc"], r.get("value", r.get("passed"))]
print(json.dumps(summary))
PYEOF
