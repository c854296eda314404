"""params.yaml's own extensions and their checks, before any job: eviction rules, samplers and methods of
any kind (each contract's function imported, so a typo names its key), and every synthesis method's
settings (a built-in's checked against its name-table entry)."""

from __future__ import annotations

from . import methods


def extension_errors(cfg: dict) -> list[str]:
    """params.yaml's own eviction rules (``evictions: {name: "module:function"}``) and samplers
    (``samplers: {name: {function, ...}}``), imported here so a typo fails before any job, and methods
    (``methods: {name: {real_evict, gen_evict | recipe, sampler, label}}``, then added to the name
    table). Without any, nothing to import (method/memory.py imports torch)."""
    errors, known = [], set()
    own = cfg.get("evictions") or {}
    if own or cfg.get("methods"):
        from ..method.memory import EVICTIONS, load_evictions

        try:
            load_evictions(own)
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            errors.append(f"evictions: {e}")
        known = {*EVICTIONS, *own}
    for name, spec in (cfg.get("methods") or {}).items():
        errors += _own_method_errors(name, spec, known)
    for name, spec in (cfg.get("samplers") or {}).items():
        if "function" in spec:  # one's own: imported here, so a typo fails before any job
            try:
                methods.resolve(spec["function"])
            except (ImportError, AttributeError, ValueError) as e:
                errors.append(f"samplers.{name}.function: {spec['function']!r} cannot be imported ({e})")
        elif name not in methods.SAMPLERS:
            errors.append(f"samplers.{name}: not a built-in sampler ({', '.join(methods.SAMPLERS)}): "
                          "give its function to add one of your own")
        else:
            errors += _builtin_sampler_errors(name, spec, cfg["sample"]["steps"])
    if not errors:
        try:
            methods.use(cfg)
        except ValueError as e:
            errors.append(str(e))
    for name, spec in (cfg.get("methods") or {}).items() if not errors else ():
        if spec.get("sampler", "ddpm") not in methods.SAMPLERS:
            errors.append(f"methods.{name}.sampler: unknown sampler {spec['sampler']!r} "
                          f"(known: {', '.join(methods.SAMPLERS)})")
        if "recipe" in spec and spec["recipe"] not in methods.names(finetuned=True):
            errors.append(f"methods.{name}.recipe: {spec['recipe']!r} is not a fine-tuned method "
                          f"(one of {', '.join(methods.names(finetuned=True))})")
    return errors


def _own_method_errors(name: str, spec: dict, known: set) -> list[str]:
    """One params.yaml method entry against its kind's contract (functions imported: a typo fails here)."""
    errors, kind = [], spec.get("kind", "generative")
    if kind == "generative":
        for key in ("real_evict", "gen_evict"):
            if key in spec and spec[key] not in known:
                errors.append(f"methods.{name}.{key}: unknown eviction rule {spec[key]!r} (known: {', '.join(sorted(known))})")
        if "recipe" in spec and "real_evict" in spec:
            errors.append(f"methods.{name}: give real_evict and gen_evict (a fine-tuning of its own), or recipe "
                          "(the fine-tuned method whose DiT it samples), or neither (the pretrained DiT); not both")
        if "function" in spec or "features" in spec:
            errors.append(f"methods.{name}: a generative method has no function (a sampler of its own: samplers)")
        return errors
    extra = sorted(set(spec) & {"real_evict", "gen_evict", "recipe", "sampler"})
    if extra:
        errors.append(f"methods.{name}: a {kind} method has no {', '.join(extra)}")
    if "function" not in spec:
        errors.append(f"methods.{name}.function: a {kind} method names its function ('module:function')")
        return errors
    try:
        methods.resolve(spec["function"])
    except (ImportError, AttributeError, ValueError) as e:
        errors.append(f"methods.{name}.function: {spec['function']!r} cannot be imported ({e})")
    return errors


def synthesis_errors(cfg: dict) -> list[str]:
    """Every synthesis method a table runs has its settings (``synthesis.<name>``), checked against its
    entry's schema when the name table gives one (DM's)."""
    import jsonschema

    errors, used = [], {m for t in cfg["tables"].values() for m in t["methods"]}
    for name in methods.names("synthesis"):
        if name not in used:
            continue
        settings = (cfg.get("synthesis") or {}).get(name)
        if settings is None:
            errors.append(f"synthesis.{name}: the settings of synthesis method {name!r} are missing")
            continue
        schema = methods.get(name).settings
        if schema is not None:
            plain = json_plain(schema)
            for e in jsonschema.Draft202012Validator(plain).iter_errors(settings):
                where = ".".join(str(p) for p in e.absolute_path)
                errors.append(f"synthesis.{name}{'.' + where if where else ''}: {e.message}")
    return errors


def json_plain(obj):
    """Mapping proxies (the name table's frozen entries) as plain dicts, for jsonschema."""
    if hasattr(obj, "items"):
        return {k: json_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_plain(v) for v in obj]
    return obj


def _builtin_sampler_errors(name: str, spec: dict, steps: int) -> list[str]:
    """A built-in sampler's settings: known names, and values that leave it the sampler it is named."""
    known = methods.SAMPLERS[name].settings or ()
    errors = [f"samplers.{name}.{k}: unknown setting (known: {', '.join(known) or 'none'})"
              for k in sorted(set(spec) - set(known) - set(methods.SAMPLER_KEYS))]
    if name == "mode_guidance" and spec.get("stop_t", 25) >= steps - 1:
        errors.append(f"samplers.mode_guidance.stop_t = {spec.get('stop_t', 25)}: with sample.steps = {steps} no "
                      f"step is pulled (the respaced index runs {steps - 1}..0): that is plain DDPM")
    strength = spec.get("strength", 0.7)
    if name == "prototype" and strength > 0 and int(steps * strength) == 0:
        errors.append(f"samplers.prototype.strength = {strength}: with sample.steps = {steps} no step is run "
                      "(the prototypes themselves would be the set)")
    return errors
