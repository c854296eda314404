"""Method names with settings moved off params.yaml's values: Figure 4's and the study's variants.

A variant is a method of its own, named "<method>-<key>-<value>[-<key>-<value>...]", so every path,
wildcard, MLflow run and table keeps one name for it; ``finetune_settings`` and ``sample_settings``
turn a name back into the settings its jobs run with (the only place that does).
"""

from __future__ import annotations

import re

from . import methods

# Variants. A method with settings moved off params.yaml's values is a method of its own, named
# "<method>-<key>-<value>[-<key>-<value>...]" (Figure 4's "ours-lambda_gen-0.032", the study's
# "ours-max_steps-5000-guidance-2"), so every path, wildcard, MLflow run and table keeps one name
# for it. Each key belongs to one section: a finetune key makes a model of its own, a sample key
# samples the same fine-tuned model differently. Keys appear in this order.
VARIANT_KEYS = {"lambda_real": ("finetune", float), "lambda_gen": ("finetune", float),
                "memory_size": ("finetune", int), "max_steps": ("finetune", int), "guidance": ("sample", float)}
SWEEP_KEYS = ("lambda_real", "lambda_gen", "memory_size")  # Figure 4's hyper-parameters
_KEYS = "|".join(VARIANT_KEYS)
_NUMBER = r"[0-9][0-9.e+-]*?"
VARIANT_RE = re.compile(rf"^(?P<base>[a-z0-9-]+?)(?P<parts>(?:-(?:{_KEYS})-{_NUMBER})*)$")
_PART_RE = re.compile(rf"-(?P<key>{_KEYS})-(?P<value>{_NUMBER})(?=-(?:{_KEYS})-|$)")


def _number(value) -> str:
    """One spelling per value: 2, 2.0 and 2e0 are all "2"; 0.032 stays "0.032", 1e39 "1e+39"."""
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def variant_name(method: str, key: str | None = None, value=None, **more) -> str:
    """``method`` with settings overridden, keys in VARIANT_KEYS order: variant_name("ours",
    "lambda_gen", 0.032) or variant_name("ours", max_steps=5000, guidance=2)."""
    base, overrides = split_method(method)
    overrides = {**overrides, **({key: value} if key is not None else {}), **more}
    unknown = set(overrides) - set(VARIANT_KEYS)
    if unknown:
        raise ValueError(f"not a variant key: {', '.join(sorted(unknown))} (known: {', '.join(VARIANT_KEYS)})")
    return base + "".join(f"-{k}-{_number(overrides[k])}" for k in VARIANT_KEYS if k in overrides)


def split_method(name: str) -> tuple[str, dict]:
    """(base method, overrides): "ours-memory_size-16" -> ("ours", {"memory_size": 16});
    "ours-max_steps-5000-guidance-2" -> ("ours", {"max_steps": 5000, "guidance": 2.0})."""
    m = VARIANT_RE.match(name)
    if m is None or not m["parts"]:
        return name, {}
    return m["base"], {p["key"]: VARIANT_KEYS[p["key"]][1](float(p["value"])) for p in _PART_RE.finditer(m["parts"])}


def base_method(name: str) -> str:
    return split_method(name)[0]


def section_overrides(method: str, section: str) -> dict:
    """The overrides of a variant that belong to one section ("finetune" or "sample")."""
    return {k: v for k, v in split_method(method)[1].items() if VARIANT_KEYS[k][0] == section}


def finetuned_name(method: str) -> str | None:
    """The fine-tuned model a generative method samples from: its generator's name (its own, or its
    recipe's) with the finetune keys ("ours-max_steps-5000-guidance-2" -> "ours-max_steps-5000");
    None for the pretrained DiT."""
    generator = methods.get(base_method(method)).generator
    return None if generator is None else variant_name(generator, **section_overrides(method, "finetune"))


def finetune_settings(cfg: dict, method: str) -> dict:
    """Every setting of one fine-tuning job (method/finetune.py's FinetuneConfig): params.yaml's
    finetune section, the method's own settings and evictions (methods.py), then a variant's values;
    with the module of each eviction rule of the ``evictions`` section the method uses (none for
    the built-in rules, so adding a rule re-runs nothing else)."""
    m = methods.get(base_method(method))
    if not m.finetuned:
        raise ValueError(f"method {method!r} uses the pretrained model as is: there is nothing to fine-tune")
    real, gen = m.evict
    out = {**{k: v for k, v in cfg["finetune"].items() if k != "threads"}, **m.finetune,
           "real_evict": real, "gen_evict": gen, **section_overrides(method, "finetune")}
    own = {k: v for k, v in (cfg.get("evictions") or {}).items() if k in (real, gen)}
    return {**out, "evictions": own} if own else out


def sample_settings(cfg: dict, method: str) -> dict:
    """Every setting of one sampling job (generator/samplers.py): params.yaml's sample section with a
    variant's values over it; for a sampler other than plain DDPM its name and its own settings (the
    ``samplers`` section's entry, with its function when it is one's own), so a change there re-runs
    only its methods' sampling."""
    out = {**{k: v for k, v in cfg["sample"].items() if k != "threads"}, **section_overrides(method, "sample")}
    sampler = methods.get(base_method(method)).sampler
    if sampler == "ddpm":
        return out
    own = (cfg.get("samplers") or {}).get(sampler, {})
    settings = {k: v for k, v in own.items() if k not in methods.SAMPLER_KEYS}
    return {**out, "sampler": sampler, **settings, **({"function": own["function"]} if "function" in own else {})}


def _keys_of(section: str) -> str:
    return "|".join(k for k, (s, _) in VARIANT_KEYS.items() if s == section)


def finetuned_method_pattern() -> str:
    """Wildcard regex of every fine-tuned model's name: a fine-tuned method with finetune keys."""
    tuned = "|".join(re.escape(m) for m in methods.names(finetuned=True))
    return rf"({tuned})(-({_keys_of('finetune')})-[0-9][0-9.e+-]*)*"


def generative_method_pattern(per_ipc: bool = False) -> str:
    """Wildcard regex of the sampled methods' names whose sets are nested (or, ``per_ipc``, one per IPC):
    a method that fine-tunes nothing of its own with sample keys, or a fine-tuned model with sample keys."""
    sample = rf"(-({_keys_of('sample')})-[0-9][0-9.e+-]*)*"
    kind = [m for m in methods.names("generative") if methods.get(m).per_ipc == per_ipc]
    untuned = "|".join(re.escape(m) for m in kind if not methods.get(m).finetuned)
    tuned = "|".join(re.escape(m) for m in kind if methods.get(m).finetuned)
    alternatives = [*([untuned] if untuned else []),
                     *([rf"({tuned})(-({_keys_of('finetune')})-[0-9][0-9.e+-]*)*"] if tuned else [])]
    return rf"({'|'.join(alternatives) or '(?!)'}){sample}"
