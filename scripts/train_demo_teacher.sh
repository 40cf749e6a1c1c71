#!/usr/bin/env bash
# Reproduces the demo's shipped teacher, fastgen/assets/teachers/fashion_mnist_edm_teacher.safetensors (+ .json):
# SFT of the class-conditional EDM SongUNet (config_sft_teacher.py: EDM loss weighting, batch 256, 10000
# iterations) through train.py, then export of its power EMA with a 1000-sample FID measurement.
#
#   bash scripts/train_demo_teacher.sh            # ITERS, FID_SAMPLES, PYTHON, FASTGEN_OUTPUT_ROOT may be overridden
#
# The shipped file came from these commands: the training on one NVIDIA H100 (torch 2.11.0+cu130, about 7 minutes
# at 26 it/s), the export and FID on a 2-core CPU. On a 2-core CPU the training takes about 4 s per iteration
# (about 11 hours); `ITERS=1500 EXTRA="dataloader_train.batch_size=64"` gives a weaker teacher in about 30 minutes.
# GPU kernels and thread counts change float rounding, so a rerun matches closely but not bit for bit. The
# constant-after-warm-up LR and the power EMA do not depend on trainer.max_iter, so stopping a longer run at
# checkpoint ITERS gives the same weights as this run.
set -euo pipefail
cd "$(dirname "$0")/.."

ITERS="${ITERS:-10000}"
EXTRA="${EXTRA:-}"
FID_SAMPLES="${FID_SAMPLES:-1000}"
PYTHON="${PYTHON:-.venv/bin/python}"
export FASTGEN_OUTPUT_ROOT="${FASTGEN_OUTPUT_ROOT:-FASTGEN_OUTPUT}"

# shellcheck disable=SC2086  # EXTRA holds several overrides
"$PYTHON" train.py --config=fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py - "trainer.max_iter=${ITERS}" ${EXTRA}

CKPT="${FASTGEN_OUTPUT_ROOT}/fastgen/fashion_mnist/sft_teacher/checkpoints/$(printf %07d "${ITERS}").pth"
"$PYTHON" -m fastgen.demo.teacher --checkpoint "${CKPT}" --ema_name ema \
    --out fastgen/assets/teachers/fashion_mnist_edm_teacher.safetensors \
    --command "bash scripts/train_demo_teacher.sh (ITERS=${ITERS}${EXTRA:+ EXTRA=\"${EXTRA}\"}): python train.py --config=fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py - trainer.max_iter=${ITERS}${EXTRA:+ ${EXTRA}}" \
    --measure_fid "${FID_SAMPLES}"
