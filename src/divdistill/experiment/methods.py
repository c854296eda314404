"""The name table: every method's one entry, read by the config checks, the wildcards, the jobs,
the tables and figures, MLflow and the cost model.

A method is a column of the tables. Its ``kind`` says how its distilled sets come about:

    selection    real images picked by a rule (Random, K-Center, Herding): ``function``, called as
                 fn(train ImageSet, max_ipc, seed, features (N, D) or None) -> class-major training
                 indices, ordered within class (baselines/select.py); ``features``: it needs the
                 feature ConvNet's embedding
    synthesis    pixels optimised per IPC (DM): one set per (IPC, seed), not nested prefixes;
                 ``function``, called as fn(train, ipc, seed, settings, device, log) -> (uint8 images,
                 labels, metadata) (baselines/dm.py ``synthesize``), its settings params.yaml's
                 ``synthesis.<name>`` (checked against ``settings`` before any job, when given)
    generative   sampled from a DiT: a fine-tuning recipe times a sampler. ``evict`` = (real-memory,
                 generative-memory) eviction of its own fine-tuning (method/memory.py); ``recipe`` = the
                 method whose fine-tuned DiT it samples instead; neither: the pretrained DiT as is.
                 ``sampler`` (``SAMPLERS``, generator/samplers.py): plain DDPM, MGD³'s mode guidance,
                 D⁴M's prototypes, or one's own
    upper_bound  the whole training set (Full)
    reported     published numbers only, never run here (IDC-1; baselines/reported.py)

The order of ``BUILTIN`` is the tables' column order (the paper's Table 1 with today's training-free
MGD³ and D⁴M after Minimax, then Table 3's ablation pairs). A researcher's own generative method is
one entry of params.yaml's ``methods`` section (``use``), placed before Full: its own eviction rules
(the ``evictions`` section, method/memory.py's registry) or a ``recipe`` (another method's fine-tuned
DiT), and a ``sampler`` (built-in, or one of the ``samplers`` section). README "Extending" walks
through them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

KINDS = ("selection", "synthesis", "generative", "upper_bound", "reported")


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler of generative methods: its function and what the workflow must give it."""

    target: str  # "module:function" (generator/samplers.py's signature)
    per_ipc: bool = False  # one set per IPC (k-means with k = IPC), not nested prefixes of the largest
    needs_real: bool = False  # the class's real training latents (the dataset's latent cache)
    settings: tuple[str, ...] | None = None  # its settings' names (None: not known before its job runs)


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec("divdistill.generator.samplers:ddpm", settings=()),
    "mode_guidance": SamplerSpec("divdistill.generator.samplers:mode_guidance", per_ipc=True, needs_real=True,
                                 settings=("scale", "stop_t")),
    "prototype": SamplerSpec("divdistill.generator.samplers:prototype", per_ipc=True, needs_real=True,
                             settings=("strength",)),
}
SAMPLER_KEYS = ("function", "per_ipc", "needs_real")  # a samplers entry's keys that are not its settings


@dataclass(frozen=True)
class Method:
    name: str
    kind: str
    label: str  # its column's heading
    evict: tuple[str, str] | None = None  # generative: (real, generative) memory eviction; None: not fine-tuned
    finetune: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # fixed over params.yaml's
    features: bool = False  # a selection that needs the feature extractor (baselines/features.py)
    citation: str | None = None  # where it comes from, for a reported column's footnote
    sampler: str = "ddpm"  # generative: how its sets are drawn (SAMPLERS)
    recipe: str | None = None  # generative: the fine-tuned method whose DiT it samples (None: its own / pretrained)
    function: str | None = None  # selection, synthesis: "module:function" of its contract (above)
    settings: MappingProxyType | None = None  # synthesis: JSON schema of its settings (None: its job checks them)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.evict is not None and self.kind != "generative":
            raise ValueError(f"method {self.name!r}: only a generative method has memory evictions")
        if self.recipe is not None and self.evict is not None:
            raise ValueError(f"method {self.name!r}: a recipe of another method's or evictions of its own, not both")
        if (self.function is not None) != (self.kind in ("selection", "synthesis")):
            raise ValueError(f"method {self.name!r}: a selection or synthesis method names its function, "
                             "no other kind does")
        object.__setattr__(self, "finetune", MappingProxyType(dict(self.finetune)))
        if self.settings is not None:
            object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    @property
    def finetuned(self) -> bool:
        """Fine-tunes a DiT of its own (a job of its own)."""
        return self.evict is not None

    @property
    def generator(self) -> str | None:
        """The method whose fine-tuned DiT this one samples; None: the pretrained DiT."""
        return self.recipe or (self.name if self.finetuned else None)

    @property
    def per_ipc(self) -> bool:
        """One distilled set per IPC (DM; k-means samplers), not nested prefixes of the largest IPC's."""
        return self.kind == "synthesis" or (self.kind == "generative" and SAMPLERS[self.sampler].per_ipc)


def _gen(name, label, evict, sampler="ddpm", recipe=None, **finetune):
    return Method(name, "generative", label, evict, finetune, sampler=sampler, recipe=recipe)


_SELECT = "divdistill.baselines.select"
# Distribution matching's settings (Zhao and Bilen, WACV 2023; baselines/dm.py DMConfig), checked torch-free
_DM_SETTINGS = {
    "type": "object", "additionalProperties": False,
    "required": ["iterations", "lr_img", "momentum", "batch_real", "model", "width", "depth"],
    "properties": {"iterations": {"type": "integer", "minimum": 0}, "lr_img": {"type": "number", "exclusiveMinimum": 0},
                   "momentum": {"type": "number", "minimum": 0, "maximum": 1},
                   "batch_real": {"type": "integer", "minimum": 1}, "model": {"enum": ["convnet"]},
                   "width": {"type": "integer", "minimum": 1}, "depth": {"type": "integer", "minimum": 1}},
}

BUILTIN = (
    Method("random", "selection", "Random", function=f"{_SELECT}:random_selection"),
    Method("kcenter", "selection", "K-Center", features=True, function=f"{_SELECT}:kcenter"),
    Method("herding", "selection", "Herding", features=True, function=f"{_SELECT}:herding"),
    _gen("dit", "DiT", None),
    Method("dm", "synthesis", "DM", function="divdistill.baselines.dm:synthesize", settings=_DM_SETTINGS),
    Method("idc-1", "reported", "IDC-1",
           citation="Kim et al., Dataset condensation via efficient synthetic-data parameterization, ICML 2022"),
    # the no-memory control: memories kept and logged, their terms weighted 0 (DiffFit alone)
    _gen("difffit", "DiffFit (no memory)", ("fifo", "fifo"), lambda_real=0.0, lambda_gen=0.0),
    _gen("minimax", "Minimax", ("fifo", "fifo")),
    # training-free, on the pretrained DiT: MGD³'s mode guidance and D⁴M's prototypes (generator/samplers.py)
    _gen("mgd3", "MGD³", None, sampler="mode_guidance"),
    _gen("d4m", "D⁴M", None, sampler="prototype"),
    _gen("ours", "Ours", ("max", "max")),
    # Ours with the memory terms weighted as the paper's code does (method/losses.py memory_loss)
    _gen("ours-paper-code", "Ours (paper code)", ("max", "max"), memory_weighting="paper_code"),
    _gen("realmin-genmin", "real min / gen min", ("min", "min")),
    _gen("realmin-genmax", "real min / gen max", ("min", "max")),
    _gen("realmax-genmin", "real max / gen min", ("max", "min")),
    Method("full", "upper_bound", "Full"),
)
CITATIONS = {"minimax": "Gu et al., CVPR 2024", "mgd3": "Chan-Santiago et al., ICML 2025",
             "d4m": "Su et al., CVPR 2024"}  # run methods that also have a reported column

_TABLE: dict[str, Method] = {m.name: m for m in BUILTIN}


def use(cfg: dict) -> None:
    """Add params.yaml's own samplers (``samplers: {name: {function, per_ipc, needs_real, ...settings}}``)
    and methods to the tables, before Full: generative ones ``{real_evict, gen_evict | recipe, sampler,
    label}``, selections ``{kind: selection, function, features, label}``, synthesis methods ``{kind:
    synthesis, function, label}`` (their settings: ``synthesis.<name>``). Idempotent; a name that clashes
    with another entry is refused."""
    for name, spec in (cfg.get("samplers") or {}).items():
        if "function" in spec:
            own = SamplerSpec(spec["function"], bool(spec.get("per_ipc")), bool(spec.get("needs_real")))
            if name in SAMPLERS and SAMPLERS[name] != own:
                raise ValueError(f"samplers.{name}: the name is taken by another sampler ({SAMPLERS[name].target})")
            SAMPLERS[name] = own
    for name, spec in (cfg.get("methods") or {}).items():
        kind = spec.get("kind", "generative")
        if kind == "generative":
            evict = (spec["real_evict"], spec["gen_evict"]) if "real_evict" in spec else None
            m = _gen(name, spec.get("label", name), evict, spec.get("sampler", "ddpm"), spec.get("recipe"))
        else:
            m = Method(name, kind, spec.get("label", name), features=bool(spec.get("features")),
                       function=spec.get("function"))
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


def resolve(target: str) -> Callable:
    """The function a ``"module:function"`` names (a selection's, a synthesis method's, a sampler's):
    imported when a job runs it, and by the checks before any job for params.yaml's own."""
    module, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise ValueError(f"{target} is not a function")
    return fn
