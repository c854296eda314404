"""divdistill figure1: distilled latents against the real ones, PCA of the real latents
(report/figures.py)."""

from __future__ import annotations

from .common import DEVICE, REQ, THREADS, imported

ARGS = ((["--data"], REQ), (["--vae"], REQ), (["--cache"], REQ),
        (["--distilled"], {"nargs": "+", **REQ, "help": "METHOD=PATH of each distilled set"}),
        (["--ipc"], {"type": int, **REQ}), (["--png"], REQ), (["--pdf"], REQ), (["--stats"], REQ), THREADS, DEVICE)


def run(args) -> None:
    from ..data.datasets import load_meta, load_split, take_ipc
    from ..runtime.device import resolve
    from ..generator.latents import encode_posterior, latent_cache
    from ..generator.weights import load_vae
    from ..io import load_tensors, write_json
    from ..report.figures import figure1

    imported(args.threads, mlflow=False)
    dev = resolve(args.device)
    meta, train = load_meta(args.data), load_split(args.data, "train")
    vae = load_vae(args.vae, dev, role="vae_encode")
    real = latent_cache(vae, train.images, args.cache, device=dev)["mean"]
    sets = {}
    for item in args.distilled:  # METHOD=PATH
        method, path = item.split("=", 1)
        tensors, _ = load_tensors(path)
        x, y = take_ipc(tensors["images"], tensors["labels"], args.ipc, source=path)
        sets[method] = (encode_posterior(vae, x, device=dev)[0], y)
    title = (f"{meta['name']}: distilled latents (IPC {args.ipc}, coloured) against the real training "
             "latents (grey), PCA of the real latents")
    stats = figure1(real, train.labels, sets, meta["class_names"], title, args.png, args.pdf)
    write_json(args.stats, {"dataset": meta["name"], "ipc": args.ipc,
                            "sets": dict(s.split("=", 1) for s in args.distilled), "stats": stats})
