#!/usr/bin/env bash
# LJSpeech recipe for waveflow: prepare -> train -> synthesize the test split -> evaluate.
#
#   ./run.sh --ljspeech /data/LJSpeech-1.1.tar.bz2              # all stages, configs/waveglow.yaml
#   ./run.sh --ljspeech /data/LJSpeech-1.1 --config configs/small.yaml --exp exp/small
#   ./run.sh --stage 2 --stop-stage 3 --exp exp/waveglow        # decode and score an existing run
#   ./run.sh --demo                                             # synthetic corpus, tiny model, seconds
#
# Stages (run the ones from --stage to --stop-stage; each can be re-run on its own):
#   0  waveflow prepare-ljspeech: check the corpus, write EXP/data/{train,val,test}.txt
#   1  waveflow train: EXP/train/checkpoints/{last,best}.pt (re-running resumes the run)
#   2  waveflow extract-mels + synthesize: mels of the test split -> EXP/wav/test/*.wav
#   3  waveflow evaluate: EXP/eval/metrics.csv and EXP/eval/summary.json
#
# Only the waveflow command is used. WAVEFLOW overrides it, e.g. WAVEFLOW="python -m waveflow".
# Nothing is downloaded: get LJSpeech-1.1.tar.bz2 from https://keithito.com/LJ-Speech-Dataset/.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
read -r -a waveflow <<< "${WAVEFLOW:-waveflow}"

stage=0
stop_stage=3
ljspeech=""
config=""
exp=""
split=nvidia
demo=false

usage() {
    cat <<EOF
Usage: $0 [--stage N] [--stop-stage N] [--ljspeech PATH] [--config YAML] [--exp DIR]
          [--split nvidia|espnet|random|DIR] [--demo]

  --stage, --stop-stage  first and last stage to run (default 0 and 3)
  --ljspeech PATH        LJSpeech-1.1 folder or LJSpeech-1.1.tar.bz2 (needed by stage 0)
  --config YAML          experiment config (default configs/waveglow.yaml; configs/debug.yaml with --demo)
  --exp DIR              experiment folder (default exp/<config name>; exp/demo with --demo)
  --split NAME|DIR       test/validation split (default nvidia; a folder holds id lists of another split)
  --demo                 build a small synthetic corpus and run every stage on it with configs/debug.yaml
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage) stop_stage=$2; shift 2 ;;
        --ljspeech) ljspeech=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --exp) exp=$2; shift 2 ;;
        --split) split=$2; shift 2 ;;
        --demo) demo=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ "${demo}" == true ]]; then
    config=${config:-${recipe_dir}/configs/debug.yaml}
    exp=${exp:-exp/demo}
else
    config=${config:-${recipe_dir}/configs/waveglow.yaml}
    exp=${exp:-exp/$(basename "${config}" .yaml)}
fi
if [[ ! -f "${config}" ]]; then
    echo "$0: config not found: ${config}" >&2
    exit 2
fi

data=${exp}/data
test_list=${data}/test.txt
run_dir=${exp}/train

# The checkpoint stages 2 and 3 use: the best validation checkpoint, else the newest.
checkpoint() {
    local ckpt
    for ckpt in "${run_dir}/checkpoints/best.pt" "${run_dir}/checkpoints/last.pt"; do
        if [[ -f "${ckpt}" ]]; then
            echo "${ckpt}"
            return 0
        fi
    done
    echo "$0: no checkpoint in ${run_dir}/checkpoints (run stage 1 first)" >&2
    return 1
}

if [[ ${stage} -le 0 && ${stop_stage} -ge 0 ]]; then
    echo "=== stage 0: prepare the data -> ${data}"
    prepare_args=()
    if [[ "${demo}" == true ]]; then
        ljspeech=${exp}/demo_corpus
        if [[ ! -f "${ljspeech}/metadata.csv" ]]; then
            "${waveflow[@]}" demo-corpus "${ljspeech}"
        fi
        prepare_args+=(--split random --num-val 2 --num-test 4)
    elif [[ -d "${split}" ]]; then
        prepare_args+=(--split-dir "${split}")
    else
        prepare_args+=(--split "${split}")
    fi
    if [[ -z "${ljspeech}" ]]; then
        echo "$0: stage 0 needs --ljspeech PATH (LJSpeech-1.1 folder or .tar.bz2; nothing is downloaded)" >&2
        exit 2
    fi
    "${waveflow[@]}" prepare-ljspeech "${ljspeech}" "${data}" "${prepare_args[@]}"
fi

if [[ ${stage} -le 1 && ${stop_stage} -ge 1 ]]; then
    echo "=== stage 1: train ${config} -> ${run_dir}"
    # --resume: a re-run continues the run in ${run_dir} (or starts it if there is none).
    "${waveflow[@]}" train --config "${config}" --run-dir "${run_dir}" --resume \
        "data.training_files=${data}/train.txt" "data.validation_files=${data}/val.txt"
fi

if [[ ${stage} -le 2 && ${stop_stage} -ge 2 ]]; then
    ckpt=$(checkpoint)
    echo "=== stage 2: synthesize the test split with ${ckpt} -> ${exp}/wav/test"
    "${waveflow[@]}" extract-mels --checkpoint "${ckpt}" --filelist "${test_list}" -o "${exp}/mels/test"
    "${waveflow[@]}" synthesize "${ckpt}" "${exp}/mels/test" -o "${exp}/wav/test" --seed 1234
fi

if [[ ${stage} -le 3 && ${stop_stage} -ge 3 ]]; then
    ckpt=$(checkpoint)
    echo "=== stage 3: evaluate ${exp}/wav/test against ${test_list} -> ${exp}/eval"
    "${waveflow[@]}" evaluate "${ckpt}" --filelist "${test_list}" --generated-dir "${exp}/wav/test" -o "${exp}/eval"
fi

echo "=== done: stages ${stage}-${stop_stage} in ${exp}"
