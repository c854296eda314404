"""The seeds of one evaluation cell trained as one batched network, against one network per seed.

The demo's evaluation cell (issue "Speed for the grown suite"): the seeds of a (method, dataset, IPC,
net, protocol) cell train identical architectures on same-shaped data, one after the other. Here the
same training steps, forward + backward + SGD with momentum and weight decay on pre-augmented
batches (the augmentation is the trainer's either way), two ways, interleaved so background load hits
both alike:

    per-seed   one network per seed, its own step (what evaluate/trainer.py does today)
    batched    every seed's parameters stacked (torch.func.stack_module_state) and one vmapped
               functional step (torch.func.functional_call + grad + vmap): each seed keeps its own
               initialisation and batches, the kernels run once for all seeds

It also reports how far the batched weights drift from the per-seed ones after the steps (the
floating-point order of a batched kernel differs; a lever taken must stay within a stated tolerance).

    python benchmarks/bench_batched_eval.py [--seeds 6] [--images 50] [--steps 60] [--width 24] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from divdistill.evaluate.nets import build_net


def nets(seeds: int, args) -> list[torch.nn.Module]:
    out = []
    for s in range(seeds):
        torch.manual_seed(s)
        out.append(build_net("convnet", num_classes=args.classes, channels=1, resolution=32, width=args.width, depth=3))
    return out


def per_seed(models, xs, ys, args) -> float:
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for m in models]
    t0 = time.perf_counter()
    for step in range(args.steps):
        for m, opt, x, y in zip(models, opts, xs, ys):
            loss = F.cross_entropy(m(x[step]), y[step])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def batched(models, xs, ys, args) -> tuple[float, dict]:
    params, buffers = stack_module_state(models)  # {name: (seeds, ...)}
    base = copy.deepcopy(models[0]).to("meta")

    def loss_fn(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    step_grad = vmap(grad(loss_fn), in_dims=(0, 0, 0, 0))
    mom = {k: torch.zeros_like(v) for k, v in params.items()}
    t0 = time.perf_counter()
    for step in range(args.steps):
        g = step_grad(params, buffers, xs[:, step], ys[:, step])
        with torch.no_grad():
            for k, p in params.items():  # torch.optim.SGD's update: d = g + wd p; buf = m buf + d; p -= lr buf
                d = g[k] + 5e-4 * p
                mom[k] = d if step == 0 else mom[k].mul_(0.9).add_(d)
                p.sub_(0.01 * mom[k])
    return time.perf_counter() - t0, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--images", type=int, default=50, help="batch per step and seed (IPC 10 x 5 classes)")
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60, help="the demo: 60 epochs of one batch")
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(args.seeds, args.steps, args.images, 1, 32, 32, generator=g)
    ys = torch.randint(0, args.classes, (args.seeds, args.steps, args.images), generator=g)
    times = {"per-seed": [], "batched": []}
    drift = None
    for _ in range(args.repeats):
        a = nets(args.seeds, args)
        times["per-seed"].append(per_seed(a, xs, ys, args))
        b = nets(args.seeds, args)
        t, params = batched(b, xs, ys, args)
        times["batched"].append(t)
        drift = max(float((params[k][s] - dict(a[s].named_parameters())[k]).detach().abs().max())
                    for s in range(args.seeds) for k in params)
    images = args.seeds * args.steps * args.images
    for name, ts in times.items():
        best = min(ts)
        print(f"{name:9s} {best:7.2f} s (median {statistics.median(ts):.2f})  {images / best / args.threads:8.0f} images/s per core")
    print(f"batched / per-seed speed: {min(times['per-seed']) / min(times['batched']):.2f}x; "
          f"largest weight difference after {args.steps} steps: {drift:.2e}")


if __name__ == "__main__":
    main()
