#!/usr/bin/env bash
# Reproduces the demo's shipped teacher, fastgen/assets/teachers/fashion_mnist_edm_teacher.safetensors (+ .json):
# SFT of the class-conditional EDM SongUNet (config_sft_teacher.py) through train.py, then export of its power EMA.
#
#   bash scripts/train_demo_teacher.sh            # ITERS, FID_SAMPLES, PYTHON, FASTGEN_OUTPUT_ROOT may be overridden
#
# The shipped file came from exactly these commands with the defaults below, on a shared 2-core CPU
# (OMP_NUM_THREADS=1; thread count changes float rounding, so a rerun matches closely but not bit for bit).
# The constant-after-warm-up LR and the power EMA do not depend on trainer.max_iter, so stopping a longer run at
# checkpoint ITERS gives the same weights as this run.
set -euo pipefail
cd "$(dirname "$0")/.."

ITERS="${ITERS:-1500}"
FID_SAMPLES="${FID_SAMPLES:-1000}"
PYTHON="${PYTHON:-.venv/bin/python}"
export FASTGEN_OUTPUT_ROOT="${FASTGEN_OUTPUT_ROOT:-FASTGEN_OUTPUT}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

"$PYTHON" train.py --config=fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py - "trainer.max_iter=${ITERS}"

CKPT="${FASTGEN_OUTPUT_ROOT}/fastgen/fashion_mnist/sft_teacher/checkpoints/$(printf %07d "${ITERS}").pth"
"$PYTHON" -m fastgen.demo.teacher --checkpoint "${CKPT}" --ema_name ema \
    --out fastgen/assets/teachers/fashion_mnist_edm_teacher.safetensors \
    --command "bash scripts/train_demo_teacher.sh (ITERS=${ITERS}): python train.py --config=fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py - trainer.max_iter=${ITERS}" \
    --measure_fid "${FID_SAMPLES}"
