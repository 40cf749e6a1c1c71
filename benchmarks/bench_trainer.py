"""Trainer overhead: time per training step of `Trainer.run` versus a hand-written loop doing the same work.

Both run the toy SFT model (ToyMLP on the Gaussian mixture) with the same network, batch size, data loader,
forward, backward, optimizer and LR-schedule steps. The trainer's time is measured from `on_train_begin` to the last
`on_training_step_end` (so start-up and the final checkpoint are excluded; periodic logging is included).
Runs alternate A/B several times and the median per-step time is compared. Target: ratio <= 1.05.

    .venv/bin/python benchmarks/bench_trainer.py [--steps 300] [--repeats 5] [--hidden 256] [--batch 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastgen.callbacks.callback import Callback  # noqa: E402
from fastgen.configs.experiments.Toy import config_sft  # noqa: E402
from fastgen.trainer import Trainer, move_batch  # noqa: E402
from fastgen.utils import instantiate  # noqa: E402


class StepTimer(Callback):
    def on_train_begin(self, model, iteration=0, **kwargs):
        self.start = time.perf_counter()

    def on_training_step_end(self, model, iteration=0, **kwargs):
        self.end = time.perf_counter()


def make_config(steps: int, hidden: int, batch: int):
    config = config_sft.create_config()
    config.model.net.hidden_dim = hidden
    config.dataloader_train.batch_size = batch
    config.trainer.max_iter = steps
    config.trainer.save_ckpt_iter = 10**9  # only the final checkpoint (outside the timed window)
    config.trainer.logging_iter = 100
    config.trainer.resume = False
    config.trainer.callbacks = {"timer": StepTimer()}
    return config


def time_trainer(steps: int, hidden: int, batch: int) -> float:
    config = make_config(steps, hidden, batch)
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    trainer = Trainer(config)
    trainer.run(model)
    timer = trainer.callbacks["timer"]
    return (timer.end - timer.start) / steps


def time_hand_loop(steps: int, hidden: int, batch: int) -> float:
    config = make_config(steps, hidden, batch)
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    model.init_optimizers()
    optimizer, scheduler = model.optimizers["net"], model.schedulers["net"]
    data_iter = iter(instantiate(config.dataloader_train))
    start = time.perf_counter()
    for iteration in range(1, steps + 1):
        data = move_batch(next(data_iter), model.device, model.precision)
        loss_map, _ = model.single_train_step(data, iteration)
        loss_map["total_loss"].backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()  # keep the output to the result lines
    trainer_times, hand_times = [], []
    with tempfile.TemporaryDirectory() as out:
        os.environ["FASTGEN_OUTPUT_ROOT"] = out
        time_hand_loop(20, args.hidden, args.batch)  # warm-up
        for _ in range(args.repeats):
            hand_times.append(time_hand_loop(args.steps, args.hidden, args.batch))
            trainer_times.append(time_trainer(args.steps, args.hidden, args.batch))
    hand, trainer = statistics.median(hand_times), statistics.median(trainer_times)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}")
    print(f"hand-written loop: {hand * 1e3:.3f} ms/step (runs: {', '.join(f'{t * 1e3:.2f}' for t in hand_times)})")
    print(f"Trainer.run:       {trainer * 1e3:.3f} ms/step (runs: {', '.join(f'{t * 1e3:.2f}' for t in trainer_times)})")
    print(f"ratio trainer / hand-written = {trainer / hand:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
