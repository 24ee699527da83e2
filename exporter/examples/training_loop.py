"""A small training loop that exposes its progress for ml-cost-exporter's `training` preset.

Pure Python plus prometheus_client: it fits y = 3x + 1 by mini-batch SGD and
counts what it does. The counters are the preset's default names; `epochs`
grows by a fraction per batch, so cost per epoch is measurable long before an
epoch ends. A job resuming from a checkpoint passes --resume-epochs so its
counters continue where they were.

    python training_loop.py --port 9400 --epochs 20 --samples 2000 --batch-size 50
"""

from __future__ import annotations

import argparse
import random
import time

from prometheus_client import Counter, Gauge, start_http_server

SAMPLES = Counter("training_samples", "Training samples processed.")
STEPS = Counter("training_steps", "Optimizer steps taken.")
EPOCHS = Counter("training_epochs", "Epochs completed, by fractions of an epoch per batch.")
EXPECTED_EPOCHS = Gauge("training_expected_epochs", "Epochs this job will run in all.")
LOSS = Gauge("training_loss", "Mean squared error of the last batch.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=2000, help="samples per epoch")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--step-seconds", type=float, default=0.05, help="time one step takes (simulated work)")
    parser.add_argument("--resume-epochs", type=float, default=0.0, help="epochs done before a restart")
    parser.add_argument("--stall-after-epochs", type=float, default=None, help="stop progressing (a hung job)")
    args = parser.parse_args()

    rng = random.Random(0)
    data = [(x, 3.0 * x + 1.0 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(args.samples))]
    EXPECTED_EPOCHS.set(args.epochs)
    if args.resume_epochs:  # counters continue from the checkpoint
        EPOCHS.inc(args.resume_epochs)
        SAMPLES.inc(args.resume_epochs * args.samples)
    start_http_server(args.port, addr="127.0.0.1")
    weight, bias, rate = 0.0, 0.0, 0.1
    steps_per_epoch = -(-args.samples // args.batch_size)
    step = round(args.resume_epochs * steps_per_epoch)
    while step < args.epochs * steps_per_epoch:
        if args.stall_after_epochs is not None and step >= args.stall_after_epochs * steps_per_epoch:
            time.sleep(args.step_seconds)  # hung: alive, holding the GPU, making no progress
            continue
        start = (step % steps_per_epoch) * args.batch_size
        batch = data[start:start + args.batch_size]
        grad_w = sum(2 * (weight * x + bias - y) * x for x, y in batch) / len(batch)
        grad_b = sum(2 * (weight * x + bias - y) for x, y in batch) / len(batch)
        weight, bias = weight - rate * grad_w, bias - rate * grad_b
        LOSS.set(sum((weight * x + bias - y) ** 2 for x, y in batch) / len(batch))
        SAMPLES.inc(len(batch))
        STEPS.inc()
        EPOCHS.inc(1 / steps_per_epoch)
        step += 1
        time.sleep(args.step_seconds)
    while True:  # finished: keep serving the final counters until stopped
        time.sleep(1)


if __name__ == "__main__":
    main()
