"""The evaluation protocols' name table: how a test network learns from a distilled set.

Torch-free (the Snakefile's checks and the report read it). One name in params.yaml
(``evaluate.protocols``, a table's ``protocols``), in wildcards, in MLflow params and in the
tables' row groups:

    hard        IDC / Minimax (2022): one-hot labels, SGD, step decay, augmentation (+ CutMix)
    soft        SRe2L / RDED: the teacher's logits on every augmented batch, KL at temperature T,
                AdamW, quarter-cosine decay (``evaluate.soft``; docs/protocol.md cites each value)
    hard-noaug  ``hard`` with no training augmentation (the images through the test transform only)
    soft-noaug  ``soft`` likewise: DD-Ranking's augmentation-robust score compares the pairs

The teacher of ``soft`` is one network per (dataset, test network), trained on the whole real
training set with ``hard`` (rule ``teacher``); nothing of any protocol reads the test set before the
final score.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    labels: str  # "hard": the set's one-hot labels; "soft": the teacher's logits
    augment: bool  # training augmentation (and CutMix) on; off: the test transform only
    label: str  # how the tables name it


PROTOCOLS = {
    "hard": Protocol("hard", True, "hard labels"),
    "soft": Protocol("soft", True, "soft labels (teacher)"),
    "hard-noaug": Protocol("hard", False, "hard labels, no augmentation"),
    "soft-noaug": Protocol("soft", False, "soft labels (teacher), no augmentation"),
}
HARD = "hard"  # the 2022 protocol: the headline, the study's and the sweeps' protocol
# the keys of evaluate.soft that replace the hard protocol's (the rest of evaluate.soft says how the
# student learns from the teacher)
SOFT_OVERRIDES = ("lr", "momentum", "weight_decay", "optimizer", "schedule", "batch_size")


def get(name: str) -> Protocol:
    return PROTOCOLS[name]


def label(name: str) -> str:
    return PROTOCOLS[name].label


def resolve(ev: dict, protocol: str, epochs: int) -> dict:
    """The trainer's settings (TrainConfig's keys, ``augment`` and ``net`` aside) of one protocol from
    params.yaml's ``evaluate`` section: the hard protocol's values, the soft protocol's replacements
    and temperature, augmentation off for a ``-noaug`` protocol."""
    p = PROTOCOLS[protocol]
    skip = ("epochs", "epochs_full", "seeds_full", "nets", "threads", "checkpoint_every", "one_job_per",
            "protocols", "soft", "teacher")
    hp = {k: v for k, v in ev.items() if k not in skip}
    hp["epochs"] = epochs
    if p.labels == "soft":
        soft = ev["soft"]
        hp.update({k: soft[k] for k in SOFT_OVERRIDES if k in soft})
        hp["labels"], hp["temperature"] = "soft", soft["temperature"]
        hp["augment"] = {**ev["augment"], **soft.get("augment", {})}
    if not p.augment:
        hp["train_augment"] = False
    return hp
