#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU, in the root of a Strata checkout, from
# the folder `cargo xtask gpu-check` made (bin.tar.xz, data/, this script). No Rust toolchain is
# needed: it needs the NVIDIA driver, and a Python with torch (CUDA), torchvision and
# transformers for the baselines and for NVRTC.
#
#     bash gpu-check/run.sh [RESULTS_DIR]       (default: $OUT, else gpu-check/results)
#
# Steps run most important first, each under its own timeout; once BUDGET seconds (default
# 480) have passed, the remaining steps are skipped (none runs more than 30 s past it).
# ONLY=REGEX runs only the steps whose names match (e.g. ONLY='^fusion-' or ONLY='selftest'). Every step writes RESULTS_DIR/STEP.out,
# .err and .rc; at the end all figures, and the errors of failed steps, are gathered into
# RESULTS_DIR/gpu.json (and the step files removed).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESULTS=${1:-${OUT:-$HERE/results}}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-480}
STEPS=${BENCH_STEPS:-200}
export STRATA_DATA_DIR="$ROOT/datasets"
cd "$ROOT"
START=$(date +%s)

BIN=$(mktemp -d)
tar -xJf "$HERE/bin.tar.xz" -C "$BIN"

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

# step NAME TIMEOUT COMMAND...: runs with a timeout, keeps stdout, stderr and the exit code;
# skipped once the budget is spent.
step() {
    local name=$1 limit=$2
    shift 2
    local elapsed=$(( $(date +%s) - START ))
    if [ -n "${ONLY:-}" ] && ! [[ "$name" =~ $ONLY ]]; then
        return
    fi
    if [ "$elapsed" -ge "$BUDGET" ]; then
        echo "== $name: skipped ($elapsed s of $BUDGET spent)" >&2
        echo "skipped after $elapsed s" > "$RESULTS/$name.err"
        : > "$RESULTS/$name.out"
        echo "-1 0" > "$RESULTS/$name.rc"
        return
    fi
    # No step runs more than 30 s past the budget.
    [ "$limit" -gt $(( BUDGET - elapsed + 30 )) ] && limit=$(( BUDGET - elapsed + 30 ))
    echo "== $name: $*" >&2
    local t0
    t0=$(date +%s%N)
    timeout "$limit" "$@" > "$RESULTS/$name.out" 2> "$RESULTS/$name.err"
    local rc=$?
    echo "$rc $(( ($(date +%s%N) - t0) / 1000000 ))" > "$RESULTS/$name.rc"
    tail -n 2 "$RESULTS/$name.err" >&2
    tail -n 1 "$RESULTS/$name.out" >&2
}

CUDA="$BIN/strata-cuda"
FUSION="$BIN/strata-cuda-fusion"
CHECKS="$BIN/strata-cuda-fusion-checks"
TCH="$BIN/strata-tch"
# The tch binary runs only against the LibTorch release it was built with (its C++ ABI changes
# between releases).
TCH_BUILT=$(cat "$BIN/tch-torch-version" 2>/dev/null)
TCH_HERE=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)
if ! [ -x "$TCH" ]; then
    TCH=
elif [ "$TCH_BUILT" != "$TCH_HERE" ]; then
    echo "strata-tch was built against LibTorch ${TCH_BUILT:-?} but this machine has torch ${TCH_HERE:-none}: tch steps skipped" >> "$RESULTS/machine.txt"
    TCH=
fi
# step, with the LibTorch of this machine's torch for the tch binary.
tch_step() {
    LD_LIBRARY_PATH="$TORCH_LIB:$LD_LIBRARY_PATH" step "$@"
}
REF=benches/reference
BENCH="--format json --steps $STEPS --warmup 20"
RESNET="--format json --steps 30 --warmup 5"
GPT="--format json --steps 3 --warmup 1"

# Correctness first: every model on cuda against flex, with Burn's plain kernels (Strata's
# convolution is im2col and a matrix product there), and PyTorch's own CUDA-against-CPU gaps.
[ -x "$CUDA" ] && step cuda-selftest 120 "$CUDA" selftest --backend cuda --format json
step pytorch-tf32-gaps 60 "$PY" xtask/gpu/tf32_gaps.py
# Speed on the plain kernels, each beside PyTorch: the simple CNN, ResNet-18, GPT-2 decoding,
# the LSTM.
[ -x "$CUDA" ] && step cuda-cnn-train-b64 60 "$CUDA" bench cnn-train --backend cuda $BENCH --batch-size 64
step pytorch-cuda-cnn-train-b64 60 "$PY" $REF/cnn_train.py --device cuda --steps "$STEPS" --warmup 20 --batch-size 64
[ -x "$CUDA" ] && step cuda-resnet18-train-b64 90 "$CUDA" bench resnet18-train --backend cuda $RESNET --batch-size 64
step pytorch-cuda-resnet18-train-b64 60 "$PY" $REF/resnet18_train.py --device cuda --steps 30 --warmup 5 --batch-size 64
[ -x "$CUDA" ] && step cuda-gpt2-decode 60 "$CUDA" bench gpt2-decode --backend cuda $GPT
step pytorch-cuda-gpt2-decode 60 "$PY" $REF/gpt2_decode.py --device cuda --steps 3 --warmup 1
[ -x "$CUDA" ] && STRATA_DATA_DIR="$HERE/data" step cuda-lstm-train 60 "$CUDA" bench lstm-train --backend cuda --format json --steps 50 --warmup 5
STRATA_DATA_DIR="$HERE/data" step pytorch-cuda-lstm-train 60 "$PY" $REF/lstm_train.py --device cuda --steps 50 --warmup 5
# Where the time goes on the plain kernels: CubeCL's profile of each kernel launch (a
# cubecl.toml in the working directory turns it on), summed by kernel by xtask/gpu/kernels.py.
if [ -x "$CUDA" ]; then
    PROF=$(mktemp -d)
    printf '[profiling.logger]\nlevel = "basic"\nfile = "%s/kernels.log"\n' "$PROF" > "$PROF/cubecl.toml"
    profile() { # profile NAME TIMEOUT ARGS...: the run, then its kernels.
        local name=$1 timeout=$2
        shift 2
        rm -f "$PROF/kernels.log"
        step "$name" "$timeout" env -C "$PROF" "$CUDA" "$@" && step "$name-kernels" 30 "$PY" xtask/gpu/kernels.py "$PROF/kernels.log"
    }
    profile cuda-profile-resnet18-train 90 bench resnet18-train --backend cuda --format json --steps 3 --warmup 2 --batch-size 64
    profile cuda-profile-cnn-train 60 bench cnn-train --backend cuda --format json --steps 20 --warmup 5 --batch-size 64
    profile cuda-profile-gpt2-decode 60 bench gpt2-decode --backend cuda $GPT
fi
# A one-epoch training run for the accuracy, and PyTorch with TF32 products.
[ -x "$CUDA" ] && step cuda-train-vision-1-epoch 120 "$CUDA" train-vision --backend cuda --epochs 1 --artifact-dir "$BIN/run-cuda" --format json
step pytorch-cuda-cnn-train-b64-tf32 60 "$PY" $REF/cnn_train.py --device cuda --steps "$STEPS" --warmup 20 --batch-size 64 --tf32
# LibTorch on the GPU, built against this machine's torch.
if [ -n "$TCH" ]; then
    tch_step tch-selftest 120 "$TCH" selftest --backend tch --device-index 0 --format json
    tch_step tch-cnn-train-b64 60 "$TCH" bench cnn-train --backend tch --device-index 0 $BENCH --batch-size 64
    tch_step tch-resnet18-train-b64 60 "$TCH" bench resnet18-train --backend tch --device-index 0 $RESNET --batch-size 64
    tch_step tch-gpt2-decode 60 "$TCH" bench gpt2-decode --backend tch --device-index 0 $GPT
fi
# Burn's fusion and autotuning (STRATA_FUSION=1): correctness, then speed.
if [ -x "$FUSION" ]; then
    step fusion-selftest-cnn 90 "$FUSION" selftest --backend cuda --format json --only simple-cnn --only conv1 --only conv2
    step fusion-selftest-sequence 90 "$FUSION" selftest --backend cuda --format json --only lstm --only gru --only gpt2
    step fusion-cnn-train-b64 150 "$FUSION" bench cnn-train --backend cuda $BENCH --batch-size 64
    step fusion-resnet18-train-b64 90 "$FUSION" bench resnet18-train --backend cuda $RESNET --batch-size 64
    step fusion-gpt2-decode 60 "$FUSION" bench gpt2-decode --backend cuda $GPT
fi
# Fusion with Burn's autotune checks: CubeCL runs every candidate of each tuned kernel and
# compares the outputs; the decisions (JSON lines, with each candidate's check) go to a file,
# and the next step prints the candidates that failed.
if [ -x "$CHECKS" ]; then
    CHK=$(mktemp -d)
    printf '[autotune.decisions]\nfile = "%s/decisions.jsonl"\n' "$CHK" > "$CHK/cubecl.toml"
    step fusion-checks-selftest-cnn 120 env -C "$CHK" "$CHECKS" selftest --backend cuda --format json --only simple-cnn --only conv1 --only conv2
    step fusion-checks-failed 20 "$PY" - "$CHK/decisions.jsonl" <<'PYEOF'
import json, sys
failed, checked = [], 0
for line in open(sys.argv[1], errors="replace"):
    try:
        decision = json.loads(line)
    except ValueError:
        continue
    checks = decision.get("checks") or []
    checked += len(checks)
    bad = [c["name"] for c in checks if not c.get("passed")]
    if bad:
        failed.append({"key": decision.get("key"), "failed": bad})
print(json.dumps({"checked": checked, "failed": failed}))
PYEOF
fi
if [ -x "$FUSION" ]; then
    step fusion-train-vision-1-epoch 120 "$FUSION" train-vision --backend cuda --epochs 1 --artifact-dir "$BIN/run" --format json
    step fusion-cnn-train-b256 60 "$FUSION" bench cnn-train --backend cuda $BENCH --batch-size 256
    step pytorch-cuda-cnn-train-b256 60 "$PY" $REF/cnn_train.py --device cuda --steps "$STEPS" --warmup 20 --batch-size 256
    STRATA_DATA_DIR="$HERE/data" step fusion-lstm-train 60 "$FUSION" bench lstm-train --backend cuda --format json --steps 50 --warmup 5
    step fusion-selftest-resnet18 90 "$FUSION" selftest --backend cuda --format json --only resnet18
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
