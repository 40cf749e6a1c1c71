"""Which CPU settings change the demo's training bits: the same seed, N iterations of the demo's DMD2 config, run in
fresh processes that differ only in torch's thread count and the kernel ISA torch/MKL/oneDNN may dispatch to.

    OMP_NUM_THREADS=1 python benchmarks/demo_determinism.py --iters 20 --data_root DIR

Prints, per variant, the sha256 of the student's weights after N iterations and the largest absolute weight
difference to the first variant. Equal hashes = bit-identical training; a difference of ~1e-7 after a few
iterations is floating-point reduction order, and DMD2 training amplifies it (the demo's 1800 iterations end at
visibly different FIDs). The variants cover what differs between machines without anyone choosing it: torch's
default thread count (= the core count), and the widest vector ISA of the CPU (ATen kernels, MKL GEMM, oneDNN).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# name -> (torch threads, extra environment). ATEN_CPU_CAPABILITY picks ATen's vectorised kernels (default = no
# AVX); MKL_CBWR=COMPATIBLE makes MKL use its SSE2 code path; ONEDNN_MAX_CPU_ISA caps oneDNN's JIT kernels.
VARIANTS = {
    "1 thread": (1, {}),
    "1 thread again": (1, {}),
    "2 threads": (2, {}),
    "1 thread, ATEN_CPU_CAPABILITY=default": (1, {"ATEN_CPU_CAPABILITY": "default"}),
    "1 thread, MKL_CBWR=COMPATIBLE": (1, {"MKL_CBWR": "COMPATIBLE"}),
    "1 thread, ONEDNN_MAX_CPU_ISA=SSE41": (1, {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
}


def parse_args(argv=None) -> argparse.Namespace:
    from _args import benchmark_parser

    parser = benchmark_parser(__doc__)
    parser.add_argument("--iters", type=int, default=20, help="DMD2 iterations per variant (default 20)")
    parser.add_argument("--data_root", default=None, help="Fashion-MNIST IDX folder (default: the demo's search)")
    parser.add_argument("--variants", nargs="*", default=None, help=f"subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--child", nargs=2, metavar=("THREADS", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(iters: int, threads: int, data_root: str | None, out: str) -> None:
    """One training run in this process; saves the student's state dict to `out` and prints its hash as JSON."""
    import torch

    torch.set_num_threads(threads)
    from fastgen.demo.pipeline import STUDENT_CONFIG, ensure_fashion_mnist, run_training_stage

    os.environ["FASTGEN_OUTPUT_ROOT"] = os.path.dirname(out)
    overrides = [f"dataloader_train.root={ensure_fashion_mnist(data_root)}", f"trainer.max_iter={iters}",
                 f"trainer.save_ckpt_iter={iters}", f"trainer.logging_iter={iters}", "log_config.name=det"]
    model, _ = run_training_stage(STUDENT_CONFIG, overrides, "WARNING")
    state = {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
    torch.save(state, out)
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()
    print(json.dumps({"sha256": digest, "threads": torch.get_num_threads(),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability()}))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args.iters, int(args.child[0]), args.data_root, args.child[1])
        return 0
    import torch

    names = args.variants or list(VARIANTS)
    reference = None
    with tempfile.TemporaryDirectory() as root:
        for index, name in enumerate(names):
            threads, extra = VARIANTS[name]
            out = os.path.join(root, f"v{index}", "net.pt")
            os.makedirs(os.path.dirname(out))
            cmd = [sys.executable, os.path.abspath(__file__), "--iters", str(args.iters), "--child", str(threads), out]
            if args.data_root:
                cmd += ["--data_root", args.data_root]
            env = {**os.environ, **extra}
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
            if result.returncode != 0:
                print(f"{name}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
                return 1
            info = json.loads(result.stdout.strip().splitlines()[-1])
            state = torch.load(out)
            if reference is None:
                reference, diff = state, 0.0
            else:
                diff = max((state[k].double() - reference[k].double()).abs().max().item() for k in state)
            print(f"{name:<40} {info['cpu_capability']:<8} sha256 {info['sha256'][:16]}  max|dw| vs first "
                  f"{diff:.3e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
