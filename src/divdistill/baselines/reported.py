"""Published numbers shown beside our runs, always marked as reported (never re-run here).

IDC-1 is not re-run: its condensation at 224 px costs far more GPU time than the rest of
Table 1 together. The Minimax paper's own figures sit next to our reproduced Minimax so
readers see reported against reproduced. Numbers are top-1 % (mean, std or None when the
source gives none), keyed (dataset, method, test model) -> {ipc: (mean, std)}; facts from
../shared/SPEC.md section 3.
"""

from __future__ import annotations

SOURCES = {
    "minimax": "Gu et al., Efficient dataset distillation via minimax diffusion, CVPR 2024 "
               "(Table 1, ImageWoof)",
    "mgd3": "Chan-Santiago et al., MGD3: mode-guided dataset distillation using diffusion models, ICML 2025 "
            "(Table 1: ImageNette and ImageIDC baselines; ImageWoof MGD3 at IPC 10 and 50)",
}
# (dataset, method, model) -> (source, {ipc: (mean, std)})
REPORTED: dict[tuple[str, str, str], tuple[str, dict[int, tuple[float, float | None]]]] = {
    ("imagewoof", "random", "resnetap10"): ("minimax", {10: (29.4, 0.8), 20: (32.7, 0.4), 50: (47.2, 1.3)}),
    ("imagewoof", "dit", "resnetap10"): ("minimax", {10: (34.7, 0.5), 20: (41.1, 0.8), 50: (49.3, 0.2)}),
    ("imagewoof", "idc-1", "resnetap10"): ("minimax", {10: (39.1, 0.5), 20: (43.4, 0.3), 50: (48.3, 1.0)}),
    ("imagewoof", "minimax", "resnetap10"): ("minimax", {10: (39.2, 1.3), 20: (45.8, 0.5), 50: (56.3, 1.0)}),
    ("imagewoof", "full", "resnetap10"): ("minimax", {0: (87.5, 0.5)}),  # 0: every IPC row
    ("imagenette", "random", "resnetap10"): ("mgd3", {10: (54.2, None), 20: (63.5, None), 50: (76.1, None)}),
    ("imagenette", "minimax", "resnetap10"): ("mgd3", {10: (62.0, None), 20: (66.8, None), 50: (76.6, None)}),
    ("imageidc", "random", "resnetap10"): ("mgd3", {10: (48.1, None), 20: (52.5, None), 50: (68.1, None)}),
    ("imageidc", "minimax", "resnetap10"): ("mgd3", {10: (53.1, None), 20: (59.0, None), 50: (69.6, None)}),
    # MGD3's own ImageWoof figures (ConvNet-6, ResNetAP-10, ResNet-18; SPEC section 5); none at IPC 20
    ("imagewoof", "mgd3", "convnet"): ("mgd3", {10: (34.7, None), 50: (54.5, None)}),
    ("imagewoof", "mgd3", "resnetap10"): ("mgd3", {10: (40.4, None), 50: (56.5, None)}),
    ("imagewoof", "mgd3", "resnet18"): ("mgd3", {10: (38.5, None), 50: (58.3, None)}),
}
# Methods a table may list under `reported:`; IDC-1 exists only as reported numbers.
REPORTED_METHODS = ("idc-1", "minimax", "mgd3")


def reported(dataset: str, method: str, model: str, ipc: int | None) -> tuple[float, float | None, str] | None:
    """(mean, std, source key) of a published figure, or None when no source gives one."""
    entry = REPORTED.get((dataset, method, model))
    if entry is None:
        return None
    source, by_ipc = entry
    value = by_ipc.get(0)  # Full: one figure for every IPC row
    if value is None and ipc is not None:
        value = by_ipc.get(ipc)
    return None if value is None else (value[0], value[1], source)
