#!/usr/bin/env bash
# Every GPU figure finer-datasets tracks, each as a ratio measured in one run, and one summary table.
#
#   bash bench/gpu.sh                                # one H100: Qwen2.5-VL-7B architecture, random weights, bf16
#   bash bench/gpu.sh --device cpu --arch tiny       # the same steps end to end on the CPU, tiny models (smoke test)
#
# Steps (bench/README.md says what each row means and the targets):
#   1. bench/score.py: the letters engine vs generate (MCQ/s) at 30 MCQ per image, the device's matmul
#      peak measured in the same run and each engine's share of it (model forward FLOPs counted);
#   2. bench/dpo.py: the packed --fast DPO step vs TRL's layout (tuples/s, reference pass counted);
#   3. pytest -m gpu: the bf16 exactness tests (skipped by pytest without a CUDA device);
#   4. bench/gpu_summary.py: the table, printed and written to OUT/summary.md.
# Needs only torch, transformers and peft, and no network. Without trl or datasets (the lent GPU
# machine has neither) the TRL rows and the exactness tests are skipped with a line saying so:
# carry their wheels and pass --wheels DIR to measure them. Without jsonschema_rs a stand-in that
# validates nothing is put on the path (no benchmark validates records).
#
# Options:
#   --device DEV   cuda (default), cuda:N or cpu
#   --arch A       qwen2.5-vl-7b (default) or tiny
#   --out DIR      where the results go: a new or empty folder (default: $OUT when it names an empty
#                  folder, as on the lent GPU machine; else a new temporary folder). Written there:
#                  score.json, dpo.json, gpu-tests.xml, gpu.log (every step's output), summary.md
#   --wheels DIR   install the wheels in DIR (pip --no-index --no-deps) into a temporary folder first
# Exit status: 0 every step ran; 1 a step failed or an exactness test failed; 2 usage or a missing
# requirement; 6 --out is not empty. Python: $PYTHON, else the repository's .venv, else python3.

set -uo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
fail() { echo "error: $1" >&2; exit "${2:-2}"; }

device=cuda arch=qwen2.5-vl-7b out="" wheels=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) [ $# -ge 2 ] || fail "--device needs a value"; device=$2; shift 2 ;;
        --arch) [ $# -ge 2 ] || fail "--arch needs a value"; arch=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || fail "--out needs a value"; out=$2; shift 2 ;;
        --wheels) [ $# -ge 2 ] || fail "--wheels needs a value"; wheels=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown argument $1 (bash bench/gpu.sh --help)" ;;
    esac
done
case "$arch" in tiny|qwen2.5-vl-7b) ;; *) fail "--arch $arch: not tiny or qwen2.5-vl-7b" ;; esac
case "$device" in cpu|cuda|cuda:[0-9]*) ;; *) fail "--device $device: not cpu, cuda or cuda:N" ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi

if [ -z "$out" ] && [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ -z "$(ls -A "$OUT")" ]; then out=$OUT; fi
if [ -n "$out" ] && [ -e "$out" ] && { [ ! -d "$out" ] || [ -n "$(ls -A "$out")" ]; }; then
    fail "--out $out: not a new or empty folder (bench/gpu.sh writes only where nothing is)" 6
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/finer-gpu-work.XXXXXX") || fail "cannot make a temporary folder"
trap 'rm -rf "$work"' EXIT
log="$work/setup.log"

# no network, no user cache: the models are built from their configs with random weights
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export HF_HOME="$work/hf" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
path="$root"
if [ -n "$wheels" ]; then
    compgen -G "$wheels/*.whl" >/dev/null || fail "--wheels $wheels: no .whl files there"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$wheels"/*.whl \
        >"$work/pip.log" 2>&1 || fail "--wheels $wheels: pip could not install them: $(tail -n 1 "$work/pip.log")"
    path="$work/site:$path"
fi
export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}"

# which of the packages that matter cannot be imported here (one Python start)
missing=" $("$py" -c 'import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        print(name, end=" ")' torch transformers peft jsonschema_rs trl datasets 2>/dev/null)" \
    || fail "$py does not run"
for m in torch transformers peft; do
    case "$missing" in *" $m "*) fail "$py cannot import $m: bench/gpu.sh needs torch, transformers and peft" ;; esac
done
case "$missing" in *" jsonschema_rs "*)
    mkdir -p "$work/stub"
    cat >"$work/stub/jsonschema_rs.py" <<'EOF'
"""Stand-in for jsonschema_rs written by bench/gpu.sh: lets `import finer_datasets` work where the
package is not installed; the benchmarks validate no records, and validating raises."""


def validator_for(*args, **kwargs):
    raise ImportError("jsonschema_rs is not installed (bench/gpu.sh stand-in)")
EOF
    export PYTHONPATH="$work/stub:$PYTHONPATH"
    echo "jsonschema_rs not installed: a stand-in that validates nothing is used" | tee -a "$log" ;;
esac
if [ "$device" != cpu ]; then
    "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || fail "--device $device: torch sees no CUDA device here (use --device cpu)"
fi

if [ -z "$out" ]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/finer-gpu-bench.XXXXXX") || fail "cannot make a temporary folder"
else
    mkdir -p "$out" || fail "--out $out: cannot make the folder" 6
fi
out=$(cd "$out" && pwd)
log="$out/gpu.log"
cat "$work/setup.log" >"$log" 2>/dev/null

if [ "$arch" = tiny ]; then  # small inputs: the steps end to end in a minute or two on a CPU
    score_args=(--image-tokens 64 --text-tokens 32 --questions 30 --per-image 30 --batch 16 --matmul-size 512)
    dpo_args=(--image-tokens 64 --prompt-tokens 24 --answer-tokens 8 --batch 8 --steps 2)
else  # FINER's sizes: a 616x812 image (638 tokens), 30 MCQ per image; DPO 448x616 images (352 tokens), batch 8
    score_args=(--image-tokens 638 --text-tokens 170 --questions 60 --per-image 30 --batch 16)
    dpo_args=(--image-tokens 352 --prompt-tokens 62 --answer-tokens 30 --batch 8 --steps 3)
fi

failed=0
step() {  # step NAME SECONDS COMMAND...: its output into gpu.log, its tail here when it fails
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name: ${*/#$root\//} (at most ${limit}s)" | tee -a "$log"
    timeout -k 10 "$limit" "$@" >"$work/$name.log" 2>&1
    rc=$?
    cat "$work/$name.log" >>"$log"
    if [ $rc -ne 0 ]; then
        failed=1
        [ $rc -eq 124 ] && echo "$name: stopped after ${limit}s" | tee -a "$log"
        echo "$name: FAILED (exit $rc); its last lines:" && tail -n 15 "$work/$name.log"
    else
        echo "   done in $((SECONDS - start))s"
    fi
}

step score 150 "$py" bench/score.py --arch "$arch" --device "$device" "${score_args[@]}" --json "$out/score.json"
step dpo 210 "$py" bench/dpo.py --arch "$arch" --device "$device" "${dpo_args[@]}" --json "$out/dpo.json"
mapfile -t gpu_tests < <(grep -l "mark.gpu" tests/test_*.py)
absent=$(for m in trl datasets; do case "$missing" in *" $m "*) printf ' %s' "$m" ;; esac; done)
if [ -n "$absent" ]; then
    echo "they need trl and datasets; not installed here:$absent (carry their wheels: --wheels DIR)" >"$out/tests.skipped"
    echo "== tests: skipped: $(cat "$out/tests.skipped")" | tee -a "$log"
elif [ ${#gpu_tests[@]} -eq 0 ]; then
    echo "no test file marks a test gpu" >"$out/tests.skipped"
else
    step tests 90 "$py" -m pytest -q -p no:cacheprovider -m gpu --junitxml="$out/gpu-tests.xml" "${gpu_tests[@]}"
fi

echo "== summary ($out)"
"$py" bench/gpu_summary.py "$out" 2>>"$log" || failed=1
exit $failed
