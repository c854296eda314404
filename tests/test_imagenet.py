"""ImageNet subsets from fake ImageNet trees, and pretrained-weights loading from tiny saved models."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from divdistill.data.datasets import load_meta, load_split, prepare
from divdistill.data.imagenet import center_crop, check_imagenet_root, load_image
from divdistill.data.registry import DATASETS, read_class_list
from divdistill.io import load_tensors

# SPEC.md, "Subsets": wnid -> ImageNet-1K index
SPEC_SUBSETS = {
    "imagewoof": "n02096294 193, n02093754 182, n02111889 258, n02088364 162, n02086240 155, "
                 "n02089973 167, n02087394 159, n02115641 273, n02099601 207, n02105641 229",
    "imagenette": "n01440764 0, n02102040 217, n02979186 482, n03000684 491, n03028079 497, "
                  "n03394916 566, n03417042 569, n03425413 571, n03445777 574, n03888257 701",
    "imageidc": "n02869837 452, n01749939 64, n02488291 374, n02107142 236, n13037406 993, "
                "n02091831 176, n04517823 882, n04589890 904, n03062245 503, n01773797 74",
}
WOOF = DATASETS["imagewoof"]
SIZES = [(64, 48), (50, 80), (300, 280), (90, 90)]  # (W, H): non-square, small (enlarged) and large


def _save(path, size, seed, mode="RGB", fmt="JPEG"):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, fmt)


def make_tree(root, n_train=3, n_test=2):
    """<root>/{train,val}/<wnid>/*.JPEG for every ImageWoof class: RGB and grey JPEGs of several sizes,
    and a PNG under a .JPEG name (ImageNet holds such files)."""
    seed = 0
    for folder, n in (("train", n_train), ("val", n_test)):
        for wnid in WOOF.class_ids:
            d = root / folder / wnid
            d.mkdir(parents=True)
            for i in range(n):
                seed += 1
                mode = "L" if i == 1 else "RGB"
                fmt = "PNG" if (i == 2 and wnid == WOOF.class_ids[0]) else "JPEG"
                _save(d / f"{wnid}_{i}.JPEG", SIZES[(i + seed) % len(SIZES)], seed, mode, fmt)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("imagenet"))


# ----------------------------------------------------------------------------- class lists


@pytest.mark.parametrize("name", sorted(SPEC_SUBSETS))
def test_class_lists_match_spec(name):
    pairs = [(w, int(i)) for w, i in (p.split() for p in SPEC_SUBSETS[name].split(","))]
    wnids, labels, names = read_class_list(name)
    assert list(zip(wnids, labels)) == pairs and len(set(names)) == 10
    spec = DATASETS[name]
    assert (spec.source, spec.class_ids, spec.labels, spec.resolution, spec.channels) == \
        ("imagenet", wnids, labels, 256, 3)


# ----------------------------------------------------------------------------- preparing


def test_prepare_imagenet_layout(tree, tmp_path):
    meta = prepare("imagewoof", out=tmp_path / "woof", root=tree, layout="imagenet", workers=2)
    train, test = load_split(tmp_path / "woof", "train"), load_split(tmp_path / "woof", "test")
    assert meta == load_meta(tmp_path / "woof")
    assert train.images.shape == (30, 3, 256, 256) and train.images.dtype == torch.uint8
    assert test.images.shape == (20, 3, 256, 256)
    assert train.per_class_counts() == [3] * 10 and test.per_class_counts() == [2] * 10
    assert meta["labels"] == [193, 182, 258, 162, 155, 167, 159, 273, 207, 229]
    assert meta["class_ids"] == list(WOOF.class_ids) and meta["class_names"][0] == "Australian terrier"
    assert meta["test_split"] == "ImageNet val" and meta["resolution"] == 256
    # class-major, files in name order; each stored image is its file through load_image
    _, header = load_tensors(tmp_path / "woof" / "test.safetensors")
    assert header["source_files"][:2] == [f"val/{WOOF.class_ids[0]}/{WOOF.class_ids[0]}_{i}.JPEG" for i in (0, 1)]
    for k in (0, 1, 7):
        assert np.array_equal(load_image(tree / header["source_files"][k])[0], test.images[k].numpy())
    # grey images become three equal channels
    grey = test.images[1]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_prepare_subsamples_deterministically(tree, tmp_path):
    kw = dict(root=tree, train_per_class=2, test_per_class=1)
    prepare("imagewoof", out=tmp_path / "a", split_seed=0, **kw)
    prepare("imagewoof", out=tmp_path / "b", split_seed=0, **kw)
    prepare("imagewoof", out=tmp_path / "c", split_seed=1, **kw)
    a, b, c = (load_split(tmp_path / k, "train") for k in "abc")
    assert a.per_class_counts() == [2] * 10 and load_split(tmp_path / "a", "test").per_class_counts() == [1] * 10
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    # the folder is the cache: the same request again does no work
    mtime = (tmp_path / "a" / "train.safetensors").stat().st_mtime_ns
    prepare("imagewoof", out=tmp_path / "a", split_seed=0, **kw)
    assert (tmp_path / "a" / "train.safetensors").stat().st_mtime_ns == mtime


def test_fastai_layout_is_labelled(tree, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        meta = prepare("imagewoof", out=tmp_path / "fa", root=tree, layout="fastai", train_per_class=1,
                       test_per_class=1)
    assert meta["test_split"] == "fastai val (not ImageNet's validation set)"
    assert "NOT ImageNet's validation set" in meta["notes"] and "NOT ImageNet" in caplog.text
    assert load_meta(tmp_path / "fa")["layout"] == "fastai"


def test_center_crop_keeps_the_centre():
    # 512x300: green with red and blue side bands that the crop must cut off, a white square at the centre
    arr = np.zeros((300, 512, 3), np.uint8)
    arr[:, :, 1] = 200
    arr[:, :80] = (255, 0, 0)
    arr[:, 432:] = (0, 0, 255)
    arr[140:160, 246:266] = 255
    out = np.asarray(center_crop(Image.fromarray(arr), 256)).astype(int)  # (256, 256, 3)
    assert out.shape == (256, 256, 3)
    r, g, b = out.transpose(2, 0, 1)
    assert not ((r > 100) & (g < 100)).any() and not ((b > 100) & (g < 100)).any()  # no side band left
    assert (out[128, 128] > 240).all() and (abs(out[[0, -1], [0, -1]] - (0, 200, 0)) <= 2).all()
    white = np.argwhere((out > 240).all(-1))
    assert abs(white.mean(0) - 127.5).max() < 1.5  # the square stays centred (scale 256/300)
    # tall and large images (box halvings first): the centre of a centred disc lands on the centre
    for w, h in ((300, 700), (1200, 1100)):
        yy, xx = np.mgrid[:h, :w]
        disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(w, h) / 8) ** 2).astype(np.uint8) * 255
        out = np.asarray(center_crop(Image.fromarray(disc), 256))
        assert out.shape == (256, 256)
        assert abs(np.argwhere(out > 128).mean(0) - 127.5).max() < 1.5


# ----------------------------------------------------------------------------- errors


def test_missing_and_empty_folders_are_all_named(tmp_path):
    root = make_tree(tmp_path / "in", n_train=1, n_test=1)
    w0, w1 = WOOF.class_ids[:2]
    for p in (root / "train" / w0).iterdir():
        p.unlink()
    (root / "train" / w0).rmdir()
    (root / "val" / w1 / f"{w1}_0.JPEG").unlink()
    with pytest.raises(FileNotFoundError) as e:
        prepare("imagewoof", out=tmp_path / "out", root=root)
    msg = str(e.value)
    assert f"{root / 'train' / w0}: class folder does not exist" in msg
    assert f"{root / 'val' / w1}: class folder holds no images" in msg
    assert "https://image-net.org" in msg and not (tmp_path / "out").exists()
    # a missing root or split folder, and the fastai layout's download
    assert str(tmp_path / "nowhere") in check_imagenet_root(WOOF, tmp_path / "nowhere")[0]
    (root / "val").rename(root / "valid")
    problems = check_imagenet_root(WOOF, root, "fastai")
    assert any(str(root / "val") in p for p in problems) and "imagewoof2.tgz" in problems[-1]
    assert "fastai publishes no imageidc" in check_imagenet_root(DATASETS["imageidc"], root, "fastai")[0]
    # more images requested than a class holds
    assert any("holds 1 images" in p for p in check_imagenet_root(WOOF, root, "imagenet", {"train": 5}))


def test_corrupt_and_truncated_images_are_all_named(tmp_path):
    root = make_tree(tmp_path / "in", n_train=1, n_test=1)
    corrupt = root / "train" / WOOF.class_ids[3] / "corrupt.JPEG"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = root / "val" / WOOF.class_ids[5] / "truncated.JPEG"
    _save(truncated, (200, 150), 7)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(ValueError) as e:
        prepare("imagewoof", out=tmp_path / "out", root=root)
    assert str(corrupt) in str(e.value) and str(truncated) in str(e.value) and "2 image file(s)" in str(e.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no temporary folder left behind


# ----------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, one_thread):
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(in_channels=4, out_channels=8, sample_size=4, patch_size=2, num_layers=2,
                                num_attention_heads=2, attention_head_dim=8, num_embeds_ada_norm=1000,
                                norm_type="ada_norm_zero").eval()
    vae = AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=8).eval()
    root = tmp_path_factory.mktemp("weights")
    dit.save_pretrained(root / "pipe" / "transformer")  # DiTPipeline layout
    vae.save_pretrained(root / "pipe" / "vae")
    (root / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    vae.save_pretrained(root / "vae")  # a VAE repository layout
    return dit, vae, root


def test_load_weights_round_trip(tiny_models):
    from divdistill.generator.weights import check_weights, load_dit, load_vae

    dit, vae, root = tiny_models
    assert check_weights(root / "pipe", root / "vae", root / "pipe", labels=[193, 229], resolution=8, channels=3) == []
    x, t, y = torch.randn(2, 4, 4, 4), torch.tensor([3, 900]), torch.tensor([193, 1000])
    img = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        for path in (root / "pipe", root / "pipe" / "transformer"):  # pipeline root or its subfolder
            loaded = load_dit(path, labels=[193], latent_channels=4, resolution=8, factor=2)
            assert torch.equal(loaded(x, timestep=t, class_labels=y).sample, dit(x, timestep=t, class_labels=y).sample)
        for path in (root / "vae", root / "pipe"):
            loaded = load_vae(path, channels=3, latent_channels=4)
            assert torch.equal(loaded.encode(img).latent_dist.mean, vae.encode(img).latent_dist.mean)


def test_missing_weights_name_the_fetch_command(tiny_models, tmp_path):
    from divdistill.generator.weights import check_weights, load_dit, load_vae

    _, _, root = tiny_models
    problems = check_weights(tmp_path / "dit", root / "vae", tmp_path / "mse")
    assert len(problems) == 2
    assert f"huggingface-cli download facebook/DiT-XL-2-256 --local-dir {tmp_path / 'dit'}" in problems[0]
    assert f"hf download stabilityai/sd-vae-ft-mse --local-dir {tmp_path / 'mse'}" in problems[1]
    with pytest.raises(FileNotFoundError, match="stabilityai/sd-vae-ft-ema"):
        load_vae(tmp_path / "ema")
    # a folder without config.json, and one with config.json but no weights
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_dit(tmp_path / "empty")
    (tmp_path / "nowts").mkdir()
    (tmp_path / "nowts" / "config.json").write_text((root / "vae" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model"):
        load_vae(tmp_path / "nowts")


def test_wrong_architecture_names_the_key(tiny_models, tmp_path):
    import shutil

    from divdistill.generator.weights import WeightsError, check_weights, load_dit, load_vae

    _, _, root = tiny_models
    with pytest.raises(WeightsError, match="num_embeds_ada_norm = 1000, but the dataset uses label 1000"):
        load_dit(root / "pipe", labels=[5, 1000])
    with pytest.raises(WeightsError, match="latent_channels = 4, but the DiT's in_channels = 8"):
        load_vae(root / "vae", latent_channels=8)
    bad = shutil.copytree(root / "pipe", tmp_path / "pipe")
    cfg = json.loads((bad / "transformer" / "config.json").read_text())
    (bad / "transformer" / "config.json").write_text(json.dumps({**cfg, "out_channels": 4}))
    with pytest.raises(WeightsError) as e:
        load_dit(bad)
    assert f"{bad / 'transformer'}/config.json: out_channels = 4" in str(e.value)
    problems = check_weights(bad, root / "vae", root / "vae", resolution=256)
    assert any("out_channels = 4" in p for p in problems) and any("sample_size = 4" in p for p in problems)


def test_unreadable_weights_and_classes_smaller_than_the_ipc_are_found_up_front(tiny_models, tmp_path):
    """Before any job: a truncated weights file is named (it once failed mid-DAG inside from_pretrained),
    and at paper scale (train_per_class null: every image) a class holding fewer images than the
    largest IPC is named with the key to change."""
    import shutil

    from divdistill.generator.weights import check_weights

    _, _, root = tiny_models
    bad = shutil.copytree(root / "vae", tmp_path / "vae")
    weights = bad / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # an interrupted download
    problems = check_weights(root / "pipe", bad, root / "vae")
    assert len(problems) == 1 and f"{weights}: weights file unreadable" in problems[0]
    assert "stabilityai/sd-vae-ft-ema" in problems[0]
    tree = make_tree(tmp_path / "in", n_train=3, n_test=1)
    problems = check_imagenet_root(WOOF, tree, "imagenet", {"train": None, "test": None}, ipc=10)
    assert len(problems) == 11  # every class, then how to obtain the data
    assert f"{tree / 'train' / WOOF.class_ids[0]}: holds 3 images, fewer than ipc 10" in problems[0]
