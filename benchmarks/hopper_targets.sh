#!/usr/bin/env bash
# The Hopper kernel targets (prefill against cuDNN, forward + backward against cuDNN, fp8-KV GQA
# and MLA decode against our bf16 decode, MLA bf16 at 128 heads) measured on one machine, each
# bench beside the vendor kernel or baseline it is compared with. Every step checks its kernels
# against the float32 reference before timing them; logs and CSVs land under OUT/<step>/.
#
#     bash benchmarks/hopper_targets.sh OUT [prefill,backward,decode_fp8,mla,mla_fp8]
#
# Two parts fit one ten-minute call each: "prefill,backward" and "decode_fp8,mla,mla_fp8".
# A step that runs past its limit is stopped (timeout) and the next one starts; what it wrote stays.
# Each step writes 3-4 files under OUT/<step>/. PACK=1 packs the steps' folders into
# OUT/steps.tgz after the last step (beside gpu.txt and summary.txt), for a machine whose replies
# carry a few files only.
set -u
out=${1:?usage: hopper_targets.sh OUT [steps]}
steps=${2:-prefill,backward,decode_fp8,mla,mla_fp8}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv | tee "$out/gpu.txt"

step() {  # name, limit in seconds, command...
    local name=$1 limit=$2; shift 2
    mkdir -p "$out/$name"
    local t0=$SECONDS
    timeout "$limit" "$@" --out "$out/$name" > "$out/$name/log.txt" 2>&1
    echo "== $name: exit $?, $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
    tail -n 14 "$out/$name/log.txt" | tee -a "$out/summary.txt"
}

for s in ${steps//,/ }; do
    case $s in
        prefill)    step prefill 240 python3 benchmarks/prefill_vs_cudnn.py --head-dims 128 ;;
        backward)   step backward 300 python3 -m attn_dse.gpu.backward ;;
        decode_fp8) step decode_fp8 180 python3 -m attn_dse.gpu.decode_fp8 ;;
        mla)        step mla 160 python3 -m attn_dse.gpu.measure --families mla_decode ;;
        mla_fp8)    step mla_fp8 240 python3 -m attn_dse.gpu.mla_decode_fp8 ;;
        *) echo "unknown step $s (known: prefill backward decode_fp8 mla mla_fp8)"; exit 2 ;;
    esac
done
if [ "${PACK:-0}" = 1 ]; then
    tar -czf "$out/steps.tgz" -C "$out" ${steps//,/ } && for s in ${steps//,/ }; do rm -r "${out:?}/$s"; done
    echo "packed: $out/steps.tgz" | tee -a "$out/summary.txt"
fi
