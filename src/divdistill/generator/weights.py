"""Pretrained generator weights (DiT-XL/2-256, sd-vae-ft-ema, sd-vae-ft-mse) from local folders only.

Nothing here downloads: every load passes ``local_files_only=True`` and a folder that exists, and every
problem says which command fetches the weights on a machine with internet, e.g.

    hf download facebook/DiT-XL-2-256 --local-dir weights/DiT-XL-2-256

The DiT folder may be the ``DiTPipeline`` root (``model_index.json``, ``transformer/``, ``vae/``) or its
``transformer/`` subfolder; a VAE folder may be a VAE repository or a pipeline root (its ``vae/``).
Architectures are checked from ``config.json`` before any weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel

from ..io import DamagedFile, read_json, safetensors_damage

WEIGHTS_STEM = "diffusion_pytorch_model"


@dataclass(frozen=True)
class Role:
    """One generator part: where it comes from and which pipeline subfolder holds it."""

    repo: str  # Hugging Face Hub repository the paper's protocol uses
    subfolder: str  # its folder inside a diffusers pipeline
    what: str


ROLES = {
    "dit": Role("facebook/DiT-XL-2-256", "transformer", "DiT-XL/2-256 (ImageNet-1K class-conditional)"),
    "vae_encode": Role("stabilityai/sd-vae-ft-ema", "vae", "encoding VAE sd-vae-ft-ema"),
    "vae_decode": Role("stabilityai/sd-vae-ft-mse", "vae", "decoding VAE sd-vae-ft-mse"),
}


class WeightsError(ValueError):
    """A weights folder that is missing, incomplete or of the wrong architecture."""


def fetch_command(role: str, path) -> str:
    """The command that puts ``role``'s weights at ``path`` (a pipeline subfolder path fetches the root)."""
    r, path = ROLES[role], Path(path)
    dest = path.parent if path.name == r.subfolder and role == "dit" else path
    return (f"hf download {r.repo} --local-dir {dest}  "
            f"(huggingface_hub < 1.0: huggingface-cli download {r.repo} --local-dir {dest})")


def _weights_format(folder: Path) -> tuple[bool, str | None] | None:
    """(use_safetensors, variant) of the weights in ``folder``, preferring safetensors; None if none."""
    for variant in (None, "fp16"):
        stem = WEIGHTS_STEM + (f".{variant}" if variant else "")
        for ext, safe in ((".safetensors", True), (".bin", False)):
            if (folder / f"{stem}{ext}").is_file() or (folder / f"{stem}{ext}.index.json").is_file():
                return safe, variant
    return None


def locate(role: str, path) -> tuple[Path | None, list[str]]:
    """The model folder (``path`` or ``path/<subfolder>``) holding config.json and weights, or the problems."""
    r, path = ROLES[role], Path(path)
    fetch = f"fetch the {r.what} with: {fetch_command(role, path)}"
    if not path.is_dir():
        return None, [f"{path}: does not exist; {fetch}"]
    folder = path if (path / "config.json").is_file() else path / r.subfolder
    if not (folder / "config.json").is_file():
        return None, [f"{path}: no config.json (nor {r.subfolder}/config.json): not a diffusers model folder; {fetch}"]
    fmt = _weights_format(folder)
    if fmt is None:
        return None, [f"{folder}: config.json but no {WEIGHTS_STEM}.safetensors/.bin (incomplete download?); {fetch}"]
    try:
        read_json(folder / "config.json", todo=fetch)
    except (OSError, ValueError) as e:  # DamagedFile names the file, line and column
        return None, [str(e)]
    safe, variant = fmt
    single = folder / f"{WEIGHTS_STEM}{'.' + variant if variant else ''}.safetensors"
    if safe and single.is_file():  # the header and length only: cheap, and a truncated or foreign file fails here
        if damage := safetensors_damage(single):
            return None, [f"{single}: weights file unreadable: {damage} (incomplete download?); {fetch}"]
    return folder, []


def read_config(folder) -> dict:
    return read_json(Path(folder) / "config.json", todo="fetch the model folder again")


def vae_factor(vae_cfg: dict) -> int:
    """Pixels per latent cell: the encoder halves the resolution between consecutive blocks."""
    return 2 ** (len(vae_cfg["block_out_channels"]) - 1)


def dit_problems(cfg: dict, folder, labels=(), latent_channels: int | None = None,
                 resolution: int | None = None, factor: int = 8) -> list[str]:
    """Architecture mismatches of a DiT config, each naming ``folder`` and the key."""
    where, bad = f"{folder}/config.json", []
    if cfg.get("norm_type") != "ada_norm_zero":
        bad.append(f"{where}: norm_type = {cfg.get('norm_type')!r}, expected 'ada_norm_zero' (class-conditional DiT)")
    c_in, c_out = cfg.get("in_channels"), cfg.get("out_channels")
    if c_out != 2 * (c_in or 0):
        bad.append(f"{where}: out_channels = {c_out}, expected 2 * in_channels = {2 * (c_in or 0)} "
                   "(a learned-variance DiT predicts noise and variance)")
    n_cls = cfg.get("num_embeds_ada_norm") or 0
    if labels and max(labels) >= n_cls:
        bad.append(f"{where}: num_embeds_ada_norm = {n_cls}, but the dataset uses label {max(labels)}")
    if latent_channels is not None and c_in != latent_channels:
        bad.append(f"{where}: in_channels = {c_in}, but the VAE's latent_channels = {latent_channels}")
    if resolution is not None and cfg.get("sample_size", 0) * factor != resolution:
        bad.append(f"{where}: sample_size = {cfg.get('sample_size')}, but images of {resolution} px give "
                   f"latents of {resolution // factor} (VAE factor {factor})")
    return bad


def vae_problems(cfg: dict, folder, channels: int | None = None, latent_channels: int | None = None) -> list[str]:
    """Architecture mismatches of a VAE config, each naming ``folder`` and the key."""
    where, bad = f"{folder}/config.json", []
    for key in ("in_channels", "out_channels"):
        if channels is not None and cfg.get(key) != channels:
            bad.append(f"{where}: {key} = {cfg.get(key)}, but the images have {channels} channels")
    if latent_channels is not None and cfg.get("latent_channels") != latent_channels:
        bad.append(f"{where}: latent_channels = {cfg.get('latent_channels')}, but the DiT's in_channels = "
                   f"{latent_channels}")
    return bad


def check_weights(dit_dir, vae_encode_dir, vae_decode_dir, *, labels=(), resolution: int | None = None,
                  channels: int | None = None) -> list[str]:
    """Every problem with the three generator folders, from their config.json files only (cheap enough to
    run when a workflow starts). ``labels``/``resolution``/``channels``: the dataset's, checked if given."""
    found, problems = {}, []
    for role, path in (("dit", dit_dir), ("vae_encode", vae_encode_dir), ("vae_decode", vae_decode_dir)):
        folder, bad = locate(role, path)
        problems += bad
        if folder is not None:
            found[role] = (folder, read_config(folder))
    if "dit" in found:
        dit_folder, dit_cfg = found["dit"]
        enc = found.get("vae_encode")
        problems += dit_problems(dit_cfg, dit_folder, labels, resolution=resolution if enc else None,
                                 factor=vae_factor(enc[1]) if enc else 8)
    for role in ("vae_encode", "vae_decode"):
        if role in found:
            latent = found["dit"][1].get("in_channels") if "dit" in found else None
            problems += vae_problems(found[role][1], found[role][0], channels, latent)
    return problems


def _load(cls, folder: Path, device, dtype):
    """A diffusers model from ``folder``; its config.json and safetensors weights are checked first, so a
    damaged file is named (DamagedFile) rather than failing inside diffusers."""
    safe, variant = _weights_format(folder)
    todo = "fetch or re-make the model folder (a downloaded one: its README's command; the demo's: rerun the workflow)"
    read_json(folder / "config.json", todo=todo)
    weights = folder / f"{WEIGHTS_STEM}{'.' + variant if variant else ''}.safetensors"
    if safe and weights.is_file() and (damage := safetensors_damage(weights)):
        raise DamagedFile(weights, f"weights file {damage}", todo)
    model = cls.from_pretrained(folder, local_files_only=True, use_safetensors=safe, variant=variant,
                                torch_dtype=dtype, low_cpu_mem_usage=False)
    return model.to(device).eval()


def load_dit(path, device="cpu", dtype=torch.float32, *, labels=(), latent_channels: int | None = None,
             resolution: int | None = None, factor: int = 8) -> DiTTransformer2DModel:
    """DiT from a pipeline root or its ``transformer/`` folder (eval mode); checks the architecture first."""
    folder, problems = locate("dit", path)
    if folder is None:
        raise FileNotFoundError("\n".join(problems))
    problems = dit_problems(read_config(folder), folder, labels, latent_channels, resolution, factor)
    if problems:
        raise WeightsError("wrong DiT architecture:\n  " + "\n  ".join(problems))
    return _load(DiTTransformer2DModel, folder, device, dtype)


def load_vae(path, device="cpu", dtype=torch.float32, *, role: str = "vae_encode", channels: int | None = None,
             latent_channels: int | None = None) -> AutoencoderKL:
    """VAE from its folder or a pipeline root's ``vae/`` (eval mode); ``role`` picks the fetch command."""
    folder, problems = locate(role, path)
    if folder is None:
        raise FileNotFoundError("\n".join(problems))
    problems = vae_problems(read_config(folder), folder, channels, latent_channels)
    if problems:
        raise WeightsError("wrong VAE architecture:\n  " + "\n  ".join(problems))
    return _load(AutoencoderKL, folder, device, dtype)


def load_generator(dit_dir, vae_encode_dir, vae_decode_dir, meta: dict, device="cpu", dtype=torch.float32):
    """(DiT, encoding VAE, decoding VAE) for a prepared dataset's ``meta``, all checked against it first."""
    problems = check_weights(dit_dir, vae_encode_dir, vae_decode_dir, labels=meta["labels"],
                             resolution=meta["resolution"], channels=meta["channels"])
    if problems:
        raise WeightsError("pretrained weights are not usable:\n  " + "\n  ".join(problems))
    return (load_dit(dit_dir, device, dtype), load_vae(vae_encode_dir, device, dtype, role="vae_encode"),
            load_vae(vae_decode_dir, device, dtype, role="vae_decode"))
