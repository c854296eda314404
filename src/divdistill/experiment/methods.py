"""The name table: every method's one entry, read by the config checks, the wildcards, the jobs,
the tables and figures, MLflow and the cost model.

A method is a column of the tables. Its ``kind`` says how its distilled sets come about:

    selection    real images picked by a rule (Random, K-Center, Herding)
    synthesis    pixels optimised per IPC (DM): one set per (IPC, seed), not nested prefixes
    generative   sampled from a DiT; ``evict`` = (real-memory, generative-memory) eviction of its
                 fine-tuning (method/memory.py), None for the pretrained DiT sampled as is
    upper_bound  the whole training set (Full)
    reported     published numbers only, never run here (IDC-1; baselines/reported.py)

The order of ``BUILTIN`` is the tables' column order (the paper's Table 1, then Table 3's
ablation pairs). A researcher's own generative method is one entry of params.yaml's ``methods``
section (``use``), placed before Full; its eviction rules come from the ``evictions`` section
(method/memory.py's registry). README "Extending" walks through one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

KINDS = ("selection", "synthesis", "generative", "upper_bound", "reported")
FULL_IPC = "all"  # the ipc wildcard of the upper bound: the whole training set


@dataclass(frozen=True)
class Method:
    name: str
    kind: str
    label: str  # its column's heading
    evict: tuple[str, str] | None = None  # generative: (real, generative) memory eviction; None: not fine-tuned
    finetune: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # fixed over params.yaml's
    features: bool = False  # a selection that needs the feature extractor (baselines/features.py)
    citation: str | None = None  # where it comes from, for a reported column's footnote

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.evict is not None and self.kind != "generative":
            raise ValueError(f"method {self.name!r}: only a generative method has memory evictions")
        object.__setattr__(self, "finetune", MappingProxyType(dict(self.finetune)))

    @property
    def finetuned(self) -> bool:
        return self.evict is not None


def _gen(name, label, evict, **finetune):
    return Method(name, "generative", label, evict, finetune)


BUILTIN = (
    Method("random", "selection", "Random"),
    Method("kcenter", "selection", "K-Center", features=True),
    Method("herding", "selection", "Herding", features=True),
    _gen("dit", "DiT", None),
    Method("dm", "synthesis", "DM"),
    Method("idc-1", "reported", "IDC-1",
           citation="Kim et al., Dataset condensation via efficient synthetic-data parameterization, ICML 2022"),
    # the no-memory control: memories kept and logged, their terms weighted 0 (DiffFit alone)
    _gen("difffit", "DiffFit (no memory)", ("fifo", "fifo"), lambda_real=0.0, lambda_gen=0.0),
    _gen("minimax", "Minimax", ("fifo", "fifo")),
    _gen("ours", "Ours", ("max", "max")),
    # Ours with the memory terms weighted as the paper's code does (method/losses.py memory_loss)
    _gen("ours-paper-code", "Ours (paper code)", ("max", "max"), memory_weighting="paper_code"),
    _gen("realmin-genmin", "real min / gen min", ("min", "min")),
    _gen("realmin-genmax", "real min / gen max", ("min", "max")),
    _gen("realmax-genmin", "real max / gen min", ("max", "min")),
    Method("full", "upper_bound", "Full"),
)
CITATIONS = {"minimax": "Gu et al., CVPR 2024"}  # a run method that also has a reported column

_TABLE: dict[str, Method] = {m.name: m for m in BUILTIN}


def use(cfg: dict) -> None:
    """Add params.yaml's own methods (``methods: {name: {real_evict, gen_evict, label}}``) to the
    table, before Full. Idempotent; a name that clashes with another entry is refused."""
    for name, spec in (cfg.get("methods") or {}).items():
        m = _gen(name, spec.get("label", name), (spec["real_evict"], spec["gen_evict"]))
        if name in _TABLE and _TABLE[name] != m:
            raise ValueError(f"methods.{name}: the name is taken by another method ({_TABLE[name].label})")
        _TABLE[name] = m
    full = _TABLE.pop("full")
    _TABLE["full"] = full


def get(name: str) -> Method:
    if name not in _TABLE:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(_TABLE)}")
    return _TABLE[name]


def names(*kinds: str, finetuned: bool | None = None) -> tuple[str, ...]:
    """Method names in column order, of the given kinds (all when none given); ``finetuned`` keeps
    only the generative methods that are (True) or are not (False) fine-tuned."""
    return tuple(m.name for m in _TABLE.values() if (not kinds or m.kind in kinds)
                 and (finetuned is None or m.finetuned == finetuned))


def run_names() -> tuple[str, ...]:
    """Every method the workflow can run (reported-only ones excluded), in column order."""
    return tuple(m.name for m in _TABLE.values() if m.kind != "reported")


def label(name: str) -> str:
    return get(name).label


def labels() -> dict[str, str]:
    return {m.name: m.label for m in _TABLE.values()}


def citation(name: str) -> str | None:
    return get(name).citation or CITATIONS.get(name)
