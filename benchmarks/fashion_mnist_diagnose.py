"""Why a Fashion-MNIST student's FID is what it is: FID split into its mean and covariance terms, precision and recall,
class accuracy, and the distance to the teacher's ODE samples, for the teacher sampled two ways and for students.

    python benchmarks/fashion_mnist_diagnose.py --sde_steps 64 192 --checkpoints RUN/checkpoints/0002400.pth
    python benchmarks/fashion_mnist_diagnose.py --num_samples 500 --teacher_nfe 9 --sde_steps 16   # a quick look

Sources, each on the demo's seeded class-balanced noise (sample i: class i % 10, noise seeded by (--eval_seed, i)):
  - the teacher's PF-ODE (Heun, --teacher_nfe evaluations): the "teacher" row of the table;
  - the teacher's reverse SDE (the ancestral sampler, one row per --sde_steps): towards the distribution the
    teacher's *scores* imply as steps grow, the target of distribution-matching students (DMD2, SiD, f-distill);
    with an imperfect teacher it need not be the ODE's. It converges slowly (about as 1/steps), so compare several
    step counts; 192 steps of 2000 samples take about 33 CPU-minutes on the 2-core AMD EPYC;
  - each --checkpoints file's EMA student (key --ema_key) at 1 step (x0 = G(80 z)), on the teacher's architecture.
Columns: FID against the test-set statistics (the table's measure, same sample count) = mean term + covariance term;
tr(cov) of the features (the real test images' in the header); precision and recall (k = 3, against as many real
test images; fastgen/metrics/precision_recall.py); how often the feature network's classifier names the conditioning
class; and FID between the source's and the ODE teacher's features ("to teacher"). Ancestral samples draw fresh noise
from one generator per batch, so they depend on --batch_size as well as the seeds.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _args import benchmark_parser  # noqa: E402


def build_parser():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--checkpoints", nargs="*", default=[], help="training checkpoints (.pth) of 1-step students")
    parser.add_argument("--ema_key", default="ema", help="the checkpoint's model entry to load (default ema)")
    parser.add_argument("--num_samples", type=int, default=2000, help="samples per source and real images (2000)")
    parser.add_argument("--teacher_nfe", type=int, default=35, help="teacher Heun evaluations (default 35)")
    parser.add_argument("--sde_steps", nargs="*", type=int, default=[64, 192],
                        help="ancestral-sampler steps, one row each (default 64 192; none: no SDE rows)")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--eval_seed", type=int, default=0)
    parser.add_argument("--data_root", default=None, help="Fashion-MNIST IDX folder (default: as the demo finds it)")
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the Markdown table here (and its JSON beside it)")
    return parser


def diagnose(features, predictions, classes, real_features, ref_mu, ref_sigma, teacher_features=None) -> dict:
    """The row of one source: features [N, D] and predicted classes [N] of its samples, the conditioning classes [N],
    real features [M, D] (precision/recall), the reference statistics (FID) and the ODE teacher's features."""
    import numpy as np

    from fastgen.metrics import batch_stats, frechet_distance, precision_recall

    mu, sigma = batch_stats(features)
    mean_term = float(((mu - ref_mu) ** 2).sum())
    fid = frechet_distance(mu, sigma, ref_mu, ref_sigma)
    row = {"fid": fid, "mean_term": mean_term, "cov_term": fid - mean_term, "trace_cov": float(np.trace(sigma)),
           "class_accuracy": float((np.asarray(predictions) == np.asarray(classes)).mean()),
           **precision_recall(real_features, features)}
    if teacher_features is not None:
        row["fid_to_teacher"] = frechet_distance(*batch_stats(features), *batch_stats(teacher_features))
    return row


def features_of(sample_fn, args, feature_net):
    """(features [N, D] float64, predicted classes [N], conditioning classes [N]) of num_samples samples."""
    import numpy as np
    import torch

    from fastgen.demo.evaluate import NUM_CLASSES, indexed_noise, one_hot
    from fastgen.demo.pipeline import IMAGE_SHAPE
    from fastgen.metrics.fid import quantize_images

    feats, preds, classes = [], [], []
    for start in range(0, args.num_samples, args.batch_size):
        indices = range(start, min(start + args.batch_size, args.num_samples))
        labels = torch.tensor([i % NUM_CLASSES for i in indices])
        images = quantize_images(sample_fn(indexed_noise(indices, IMAGE_SHAPE, args.eval_seed), one_hot(labels),
                                           start).clamp(-1, 1))
        with torch.no_grad():
            feats.append(feature_net(images).double())
            preds.append(feature_net.logits(images).argmax(1))
        classes.append(labels)
    return torch.cat(feats).numpy(), torch.cat(preds).numpy(), torch.cat(classes).numpy().astype(np.int64)


def student_state(path: str, key: str, net) -> dict:
    """Network `key` of a fastgen checkpoint (fastgen.export.student's safe loader), checked to fit the teacher's
    architecture; a one-line UsageError naming the fix otherwise."""
    from fastgen.cli import UsageError
    from fastgen.export.student import StudentLoadError, checkpoint_network_state

    try:
        state, _ = checkpoint_network_state(path, key)
    except StudentLoadError as error:
        raise UsageError(f"--checkpoints: {str(error).replace('--net_key', '--ema_key')}") from None
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise UsageError(f"--checkpoints: {key!r} of {path} is not the teacher's architecture (missing keys "
                         f"{missing[:4]}, unexpected keys {unexpected[:4]}, other shapes {sorted(shapes)[:4]}); pass "
                         "a 1-step student of a Fashion-MNIST config that keeps the teacher's network (not MeanFlow's)")
    return state


def sources(args, students: dict):
    """(name, sample_fn(noise, condition, start)) for the teacher's ODE, its SDE rows and every checkpoint
    (`students`: path -> its checked state dict)."""
    import torch

    from fastgen.demo.evaluate import student_sampler
    from fastgen.demo.teacher import load_teacher_net

    teacher = load_teacher_net().eval()

    def ode(noise, condition, start):
        return teacher.sample(noise, condition=condition, num_steps=args.teacher_nfe)

    yield f"teacher, ODE (Heun, {args.teacher_nfe} NFE)", ode
    for steps in args.sde_steps:
        def sde(noise, condition, start, steps=steps):
            generator = torch.Generator().manual_seed(args.eval_seed * 1_000_003 + start)
            return teacher.sample(noise, condition=condition, num_steps=steps, sampler_type="ancestral",
                                  generator=generator)

        yield f"teacher, reverse SDE (ancestral, {steps} NFE)", sde
    for path, state in students.items():
        net = load_teacher_net().eval()
        net.load_state_dict(state)
        one_step = student_sampler(net, steps=1, seed=args.eval_seed, t_list=(80.0, 0.0))
        short = os.path.join(*os.path.normpath(path).split(os.sep)[-3:])
        yield f"{short} (1 step)", (lambda noise, condition, start, fn=one_step: fn(noise, condition))


def render(result: dict) -> str:
    lines = ["# Fashion-MNIST diagnosis: what a student's FID is made of", "",
             f"{result['num_samples']} samples per source (FID against the test-set statistics; precision/recall against "
             f"{result['num_samples']} real test images, k = 3); tr(cov) of the real test images' features: "
             f"{result['real_trace_cov']:.1f}.", "",
             "| source | FID | mean term | cov term | tr(cov) | precision | recall | class accuracy | FID to teacher |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['fid']:.2f} | {r['mean_term']:.2f} | {r['cov_term']:.2f} | {r['trace_cov']:.1f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['class_accuracy']:.3f} | "
                     f"{format(r['fid_to_teacher'], '.2f') if 'fid_to_teacher' in r else '-'} |")
    lines += ["", f"Machine: {result['machine']}. Finished {result['finished']}.", "",
              f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from fastgen.cli import UsageError

    args = build_parser().parse_args(argv)
    if args.num_samples < 4 or args.batch_size < 1 or args.teacher_nfe < 1 or any(s < 1 for s in args.sde_steps):
        raise UsageError("--num_samples must be >= 4; --batch_size, --teacher_nfe and every --sde_steps >= 1")
    import numpy as np
    import torch
    from fashion_mnist_table import machine_info

    from fastgen.demo.pipeline import ensure_fashion_mnist
    from fastgen.demo.teacher import load_teacher_net
    from fastgen.metrics import load_feature_extractor, load_stats
    from fastgen.metrics.feature_net import load_fashion_mnist, reference_stats_path

    torch.set_num_threads(args.num_threads)
    architecture = load_teacher_net()  # every checkpoint is checked before minutes of teacher sampling
    students = {path: student_state(path, args.ema_key, architecture) for path in args.checkpoints}
    feature_net = load_feature_extractor("fmnist")
    ref = load_stats(str(reference_stats_path("test")))
    real_images, _ = load_fashion_mnist("test", root=ensure_fashion_mnist(args.data_root), max_size=args.num_samples)
    with torch.no_grad():
        real = feature_net(real_images).double().numpy()
    rows, teacher = {}, None
    for name, fn in sources(args, students):
        started = time.perf_counter()
        feats, preds, classes = features_of(fn, args, feature_net)
        rows[name] = diagnose(feats, preds, classes, real, ref.mu, ref.sigma, teacher)
        teacher = feats if teacher is None else teacher
        r = rows[name]
        print(f"[diagnose] {name}: FID {r['fid']:.2f} (mean {r['mean_term']:.2f}, cov {r['cov_term']:.2f}) | precision "
              f"{r['precision']:.3f} recall {r['recall']:.3f} | class accuracy {r['class_accuracy']:.3f} | "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    machine = machine_info()
    result = {"num_samples": args.num_samples, "real_trace_cov": float(np.trace(np.cov(real, rowvar=False))),
              "rows": rows, "machine": f"{machine['processor']}, {machine['cpu_count']} CPUs, {args.num_threads} "
              f"torch threads, kernels {machine['cpu_capability']}, torch {machine['torch']}", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": "python " + " ".join(sys.argv)}
    text = render(result)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
