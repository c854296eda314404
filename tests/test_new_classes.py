"""A pretrained DiT meets a folder of classes outside its label space (issue "Distill your own data").

A folder dataset's classes are labels 0..K-1 (data/folders.py): for a generator pretrained on other
classes they are the first K rows of its class table, the rows Diff-Tuning's DiffFit code fine-tunes
(docs/protocol.md cites it). The test pretrains a small DiT on Fashion-MNIST's classes 0-4, fine-tunes
it with the method on a folder of classes 5-9 (the table's rows 0-4 now mean sandal, shirt, sneaker, bag
and ankle boot) and asks an independent judge, a ConvNet trained on real images of the new classes,
what the samples show. Images pass through a 16 px bottleneck as the DiT's "latents" (a VAE is not what
is tested here, and would triple the test's time).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from .conftest import FASHION, needs_fashion

OLD, NEW = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)  # pretrained classes; the folder's (T-shirt..coat; sandal..boot)
NEW_NAMES = ("a-sandal", "b-shirt", "c-sneaker", "d-bag", "e-boot")  # sorted: folder order = NEW's order
SIDE = 16  # the DiT's input side: images average-pooled 32 -> 16 px, in [-1, 1]
PER_CLASS = 100  # the folder's training images per class
SAMPLES = 20  # samples per class judged


def to_latent(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, 32, 32) -> (N, 1, 16, 16) in [-1, 1]."""
    return F.avg_pool2d(images.float() / 127.5 - 1, 32 // SIDE)


def to_image(z: torch.Tensor) -> torch.Tensor:
    """(N, 1, 16, 16) -> uint8 (N, 1, 32, 32): what the judge sees of samples and of real images alike."""
    z = F.interpolate(z, scale_factor=32 // SIDE, mode="nearest").clamp(-1, 1)
    return ((z + 1) * 127.5).round().to(torch.uint8)


def _fashion(split: str, classes, per: int | None = None, skip: int = 0):
    """Fashion-MNIST images of ``classes`` (uint8 (N, 1, 32, 32), padded as the suite's) with labels 0..len-1."""
    from divdistill.data.datasets import read_fashion

    images, labels = read_fashion(FASHION, split)
    x, y = [], []
    for i, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)[skip:None if per is None else skip + per]
        x.append(torch.from_numpy(images[idx]))
        y.append(torch.full((len(idx),), i))
    return torch.cat(x), torch.cat(y)


def _folder(root, per: int):
    """A folder dataset of the new classes (PNGs of Fashion-MNIST training images), prepared by the suite."""
    from divdistill.data import folders
    from divdistill.data.datasets import load_meta, load_split, read_fashion
    from divdistill.data.registry import DATASETS

    images, labels = read_fashion(FASHION, "train")
    for name, c in zip(NEW_NAMES, NEW):
        (root / "src" / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(labels == c)[:per]):
            Image.fromarray(images[i].reshape(images.shape[-2:])).save(root / "src" / name / f"{k:03d}.png")
    decl = {"root": str(root / "src"), "resolution": 32, "channels": 1, "val_fraction": 0.1}
    folders.register({"new-classes": decl})
    try:
        folders.prepare_folder(DATASETS["new-classes"], root / "data", **decl)
    finally:
        del DATASETS["new-classes"]
    return load_meta(root / "data"), load_split(root / "data", "train")


def _judge(seed: int = 0):
    """ConvNet-3 trained on real images of the new classes (through the same 16 px bottleneck)."""
    from divdistill.data.augment import AugmentConfig
    from divdistill.evaluate.nets import build_net
    from divdistill.evaluate.trainer import TrainConfig, seed_everything, train_and_test

    x, y = _fashion("train", NEW, per=500, skip=PER_CLASS)  # not the folder's images
    tx, ty = _fashion("test", NEW, per=200)
    seed_everything(seed)
    net = build_net("convnet", len(NEW), 1, 32, 24, 3)
    cfg = TrainConfig(epochs=4, resolution=32, eval_every=0, augment=AugmentConfig(cutmix_beta=0.0))
    res = train_and_test(net, to_image(to_latent(x)), y, to_image(to_latent(tx)), ty, cfg, seed=seed, progress=False)
    return net.eval(), res["test_acc"]


def _verdicts(judge, dit, labels: torch.Tensor) -> torch.Tensor:
    """The judge's class for a sample of each generator label (guidance 4, 25 steps)."""
    from divdistill.data.augment import AugmentConfig, test_transform
    from divdistill.generator.sample import sample_latents

    z = sample_latents(dit, labels, steps=25, guidance=4.0, null_label=dit.config.num_embeds_ada_norm, seed=0,
                       index=torch.arange(len(labels)) % SAMPLES, progress=False, precision="fp32")
    with torch.no_grad():
        return judge(test_transform(to_image(z), 32, AugmentConfig())).argmax(1)


@needs_fashion
@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_pretrained_dit_learns_a_folders_classes_in_the_rows_they_take(tmp_path):
    from divdistill.generator.pretrain import DiTConfig, train_dit
    from divdistill.generator.sample import make_scheduler
    from divdistill.method.finetune import FinetuneConfig, finetune

    x, y = _fashion("train", OLD)
    z = to_latent(x)
    cfg = DiTConfig(num_layers=4, num_attention_heads=2, attention_head_dim=32, patch_size=4, steps=800,
                    batch_size=64, lr=2e-3, warmup_steps=50)
    pretrained = train_dit(z, torch.zeros_like(z), y, len(OLD), cfg, seed=0, progress=False)

    meta, train = _folder(tmp_path, PER_CLASS)
    assert meta["class_names"] == list(NEW_NAMES) and meta["labels"] == [0, 1, 2, 3, 4]  # rows 0-4 of the table
    labels_gen = torch.tensor(meta["labels"])[train.labels]
    zf = to_latent(train.images)
    cache = {"mean": zf, "std": torch.zeros_like(zf), "mean_flip": zf.flip(-1), "std_flip": torch.zeros_like(zf)}
    # the method (both memories, max eviction); lr 10x the demo's, as DiffFit's recipe scales its lr for a
    # new domain; 600 steps of 8 is ~11 passes over the folder's 450 training images
    ft = FinetuneConfig(epochs=100, batch_size=8, lr=1e-2, ema_decay=0.99, max_steps=600, memory_size=16)
    tuned, summary = finetune(copy.deepcopy(pretrained), cache, labels_gen, len(OLD), make_scheduler(), ft, seed=0,
                              progress=False, class_order=meta["labels"])
    assert summary["steps"] == 600

    judge, real_acc = _judge()
    assert real_acc > 0.8  # the judge tells the new classes apart on real images (chance 0.2)
    labels = torch.arange(len(NEW)).repeat_interleave(SAMPLES)
    before = (_verdicts(judge, pretrained, labels) == labels).float().mean().item()
    verdicts = _verdicts(judge, tuned, labels)
    after = (verdicts == labels).float().mean().item()
    null = _verdicts(judge, tuned, torch.full((SAMPLES,), len(OLD)))
    print(f"judge on real images {real_acc:.3f}; samples of rows 0-4 judged as the new classes: "
          f"{before:.2f} before fine-tuning, {after:.2f} after (chance 0.20)")
    # above chance: P(>= 40 of 100 | p = 0.2) ~ 1e-6; and the rows learned it (before, they drew the old classes)
    assert after >= 0.4 and after - before >= 0.3
    # every class's samples are recognisably not the null class's: the judge's verdicts on them and on the
    # null label's samples differ in distribution (total variation distance over the 5 verdicts)
    hist = lambda v: torch.bincount(v, minlength=len(NEW)).float() / len(v)  # noqa: E731
    tv = [0.5 * (hist(verdicts[labels == c]) - hist(null)).abs().sum().item() for c in range(len(NEW))]
    print("total variation from the null label's verdicts:", dict(zip(NEW_NAMES, np.round(tv, 2))))
    for name, d in zip(NEW_NAMES, tv):
        assert d >= 0.3, f"{name}: its samples are judged like the null label's (TV {d:.2f})"


@needs_fashion
def test_the_dry_run_says_which_rows_a_folders_classes_take_and_refuses_too_many(tmp_path, capsys):
    """Generative methods on a folder the generator was not pretrained on: the check names the rows the
    classes take; a folder with more classes than the table has rows is refused, naming both counts."""
    from divdistill.data.registry import DATASETS
    from divdistill.experiment import config as dd
    from divdistill.experiment.grid import ConfigError

    from .conftest import ROOT
    from .test_folders import write_folder

    root = write_folder(tmp_path / "three", per_class=12, stray=False)
    cfg = dd.load(ROOT / "params.yaml")  # its DiT is pretrained on Fashion-MNIST's 10 classes
    cfg["datasets"] = {"mine": {"root": str(root), "resolution": 32, "channels": 1, "val_fraction": 0.25}}
    cfg["tables"] = {"table1": {**cfg["tables"]["table1"], "datasets": ["mine"]}}
    cfg["ipc"] = [5]
    try:
        dd.check(cfg)
        err = capsys.readouterr().err
        k = len(DATASETS["mine"].class_ids)
        assert f"datasets.mine: its {k} classes take rows 0..{k - 1} of the generator's class table " \
               "(pretrain.dataset fashion-mnist)" in err
        for i in range(11 - k):  # 11 classes: one more than the pretrained table holds
            (root / f"extra{i}").mkdir()
            Image.fromarray(np.zeros((32, 32), np.uint8) + 10 * i).save(root / f"extra{i}" / "0.png")
            for j in range(1, 12):
                Image.fromarray(np.full((32, 32), j, np.uint8)).save(root / f"extra{i}" / f"{j}.png")
        with pytest.raises(ConfigError, match=r"datasets.mine: 11 classes, but the generator's class table "
                                              r"\(pretrain.dataset fashion-mnist\) holds 10"):
            dd.check(cfg)
        cfg["datasets"]["mine"]["channels"] = 3  # RGB against a DiT pretrained on greyscale images
        with pytest.raises(ConfigError, match=r"datasets.mine: 32 px, 3 channel\(s\), but the generator is "
                                              r"pretrained on fashion-mnist at 32 px, 1 channel\(s\)"):
            dd.check(cfg)
        cfg["pretrain"]["dataset"] = "fashion-mnsit"  # a typo is named, not a KeyError
        with pytest.raises(ConfigError, match="pretrain.dataset: unknown dataset 'fashion-mnsit'"):
            dd.check(cfg)
    finally:
        DATASETS.pop("mine", None)


def test_a_pretrained_dit_folder_gives_its_table_rows(tmp_path, capsys):
    """generator.pretrain false (paper scale): the table's rows are read from the DiT's config.json (a
    pipeline root's transformer/); 3 classes fit DiT-XL/2's 1000, not a 2-row table."""
    import json

    from safetensors.torch import save_file

    from divdistill.data import folders
    from divdistill.data.registry import DATASETS
    from divdistill.experiment import config as dd
    from divdistill.experiment.folder_checks import class_rows

    from .conftest import ROOT

    root = tmp_path / "three"
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / name / "0.png")
    dit = tmp_path / "DiT-XL-2-256" / "transformer"
    dit.mkdir(parents=True)
    cfg = dd.load(ROOT / "params.yaml")
    cfg["generator"] = {**cfg["generator"], "pretrain": False, "dit": str(dit.parent)}
    folders.register({"mine": {"root": str(root), "resolution": 32, "channels": 1}})
    try:
        assert class_rows(cfg, "mine") == []  # no config.json yet: the missing weights are named elsewhere
        (dit / "config.json").write_text(json.dumps({"num_embeds_ada_norm": 1000}))  # a pipeline root's transformer/
        save_file({"w": torch.zeros(1)}, dit / "diffusion_pytorch_model.safetensors")  # weights, as a download's
        assert class_rows(cfg, "mine") == []
        assert f"datasets.mine: its 3 classes take rows 0..2 of the generator's class table (generator.dit {dit}" \
               in capsys.readouterr().err
        (dit / "config.json").write_text(json.dumps({"num_embeds_ada_norm": 2}))
        assert class_rows(cfg, "mine") == [f"datasets.mine: 3 classes, but the generator's class table "
                                               f"(generator.dit {dit}) holds 2"]
    finally:
        DATASETS.pop("mine", None)
