"""Files: how the suite writes them (atomically), reads them (naming the file and the damage when one
is bad), keeps finished results (real copies under results/history) and checkpoints jobs.

    write.py        atomic writes and the history of finished outputs
    read.py         the one way to read a file: JSON, YAML, safetensors, gzip; DamagedFile
    checkpoints.py  resumable jobs: complete, verified checkpoints with a fallback

Names are imported on first use (PEP 562), so the checks that run before any job (the Snakefile's,
without torch) can read JSON, YAML and gzip files through here without importing torch.
"""

from importlib import import_module

_HOME = {
    **dict.fromkeys(("Checkpoints", "Resumable", "load_checkpoint", "save_checkpoint", "tensor_digest"),
                    "checkpoints"),
    **dict.fromkeys(("DamagedFile", "load_tensors", "read_gzip", "read_json", "read_tsv", "read_yaml",
                     "safetensors_damage", "sha256_file"), "read"),
    **dict.fromkeys(("HISTORY_ENV", "atomic_dir", "atomic_path", "copy_file", "keep", "save_tensors", "write_json",
                     "write_text"), "write"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
