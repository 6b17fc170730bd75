"""An attribution request: every parameter of an attribute run, validated before anything runs.

``parse_request`` is the one boundary every entry point (``shapflow run``, ``mlflow run -e attribute``, the
batch commands) goes through: bad input raises ``ConfigError`` (or ``MissingAssetsError``) naming the field,
the value and the fix, and no run exists yet.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from shapflow.cache import cache_dir
from shapflow.config import ConfigError, UseCaseConfig, identity, load_use_case, stage_key
from shapflow.config.request import split_overrides
from shapflow.data import load_data
from shapflow.data.assets import require_use_case
from shapflow.execution import ExecutorSpec
from shapflow.shapley import DEFAULT_METHOD, METHODS, SAMPLERS, default_sampler, min_budget
from shapflow.shapley.sequential import design_minimum
from shapflow.shapley.targets import Target, parse_target
from shapflow.standins.tiny import tiny_config
from shapflow.utility import DataProxy, Family, check_proxy, family_of, load_proxy

__all__ = ["Request", "load_config", "parse_request", "split_overrides"]


@dataclass(frozen=True)
class Request:
    """A validated attribution request: config, coalition budget, estimator, sampler seed, workers, alias,
    experiment, the number of contributors, the precision target (None: evaluate the whole budget) and where
    coalitions run."""

    cfg: UseCaseConfig
    budget: int
    method: str
    seed: int
    workers: int
    alias: str | None
    experiment: str
    n_contributors: int
    target: Target | None = None  # stop once the values meet it (the budget is then the cap)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    check: int = 0  # held-out half-size coalitions evaluated by the same utility to check the values
    stack: int = 1  # coalitions each local process trains and samples together (not part of any coalition's key)
    proxy: DataProxy | None = field(default=None, compare=False, repr=False)  # q(S): the property of S's own data

    @property
    def design_key(self) -> str:
        """The identity of the coalitions this request evaluates and how: the coalition config, the estimator
        (whose sampler draws them), the budget and the sampler seed. The attribute run carries it as a tag, so
        a finished study of the same design is found by it, never by comparing stringified params."""
        return identity("design", stage_key(self.cfg, "coalition"), self.method, self.budget, self.seed)


def load_config(name_or_path: str, overrides: str | tuple[str, ...] = "", tiny: bool = False) -> UseCaseConfig:
    """A use case with its overrides; with ``tiny`` (or ``tiny=true`` in it), its tiny configuration."""
    cfg = load_use_case(name_or_path, split_overrides(overrides))
    if not (tiny or cfg.tiny):
        return cfg
    return tiny_config(replace(cfg, tiny=True), cache_dir("tiny-assets", cfg.data.source))


def parse_request(use_case: str = "digits", config: str | None = None, overrides: str | tuple[str, ...] = "",
                  budget: int | None = None, method: str = DEFAULT_METHOD, seed: int = 0, workers: int | None = None,
                  alias: str | None = None, experiment: str | None = None, tiny: bool = False,
                  target: str | None = None, executor: str = "local",
                  ray_address: str | None = None, num_gpus: float = 0.0, max_retries: int = 3,
                  check: str | int = "auto", stack: int = 1, proxy: bool = True) -> Request:
    """Validate every parameter and check every external asset BEFORE any run exists.

    ``budget`` None or 0: 10 n. ``workers`` None or 0: one per core for light families, else one.
    ``target``: e.g. ``pairs-separated=0.44`` (``shapley.targets``): coalitions come in batches chosen where the
    variance falls most, and the run stops once the values meet it, or at ``budget`` (then the cap).
    ``executor``/``ray_address``/``num_gpus``/``max_retries``: where coalitions run (``ExecutorSpec``).
    ``tiny`` (or ``tiny=true`` in the config) selects the tiny configuration.
    ``check``: held-out coalitions of half the contributors the run evaluates by the same utility, to report how
    well the values predict them; ``auto``: 10% of the budget (8 to 48, at most 20%), 0: none.
    ``stack``: coalitions each local process trains and samples together in one vmapped loop (the same utilities
    as one at a time; faster where small models leave the device idle).
    ``proxy``: use the data proxy q(S) (the property of S's own real images, ``shapflow.utility.data_proxy``) as the
    estimator's control variate; it is computed and checked here, so a bad one stops the request before any run.
    """
    cfg = load_config(config or use_case, overrides, tiny)
    family = family_of(cfg)
    family.check(cfg)
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is invalid: use one of {', '.join(sorted(METHODS))}")
    if seed < 0:
        raise ConfigError(f"seed={seed} is invalid: use a non-negative integer (the coalition sampler's seed)")
    spec = ExecutorSpec(executor, ray_address or None, float(num_gpus or 0.0), int(max_retries))
    _check_stack(int(stack), cfg, family, spec)
    require_use_case(cfg)
    pixels = load_data(cfg.data, cfg.assets).check_market()
    n = pixels.n_contributors
    budget = budget or 10 * n
    needed = min_budget(method, n) - 2
    if budget < needed:
        raise ConfigError(f"budget={budget} is invalid: {method} needs at least {needed} coalitions for n={n}")
    if workers is not None and workers < 0:
        raise ConfigError(f"workers={workers} is invalid: use 0 (one per core) or a positive number of processes")
    one_per_core = (os.cpu_count() or 1) if family.light else 1
    workers = workers or one_per_core
    alias = alias or None  # "" (the MLproject default) -> no alias
    if alias is not None and (alias.lower() == "latest" or not re.fullmatch(r"[\w-]+", alias)):
        raise ConfigError(f"alias={alias!r} is invalid: use letters, digits, - or _ ('latest' is reserved)")
    goal = _check_target(target, method, n, budget, workers, int(stack))
    data_proxy = None
    if proxy:
        planned = SAMPLERS[default_sampler(method)](n, budget, seed).masks
        data_proxy = check_proxy(load_proxy(cfg, pixels=pixels), planned, f"the data proxy ({cfg.property.name})")
    return Request(cfg, budget, method, seed, workers, alias, experiment or cfg.name, n, goal, spec,
                   _check_count(check, budget), int(stack), data_proxy)


def _check_target(text: str | None, method: str, n: int, budget: int, workers: int, stack: int) -> Target | None:
    """The parsed target (None for none); its method must use the leverage design and the cap cover its first
    two batches."""
    if not (text or "").strip():
        return None
    try:
        target = parse_target(text, n)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if default_sampler(method) != "leverage":
        raise ConfigError(f"target={text} needs a method on the leverage design (surrogate-shapley, surrogate-banzhaf, "
                          f"leverage), not method={method}")
    needed = design_minimum(n, workers, stack)
    if budget < needed:
        raise ConfigError(f"budget={budget} is below what target={text} needs for n={n} with {workers} worker(s): "
                          f"a first batch and one chosen batch, {needed} coalitions; raise --budget (the cap)")
    return target


def _check_stack(stack: int, cfg: UseCaseConfig, family: Family, spec: ExecutorSpec) -> None:
    """``stack`` >= 1; more than one needs a family whose models stack, eager kernels and the local executor."""
    if stack < 1:
        raise ConfigError(f"stack={stack} is invalid: use 1 (one coalition at a time) or more coalitions trained "
                          "and sampled together per process")
    if stack == 1:
        return
    if not family.stackable:
        raise ConfigError(f"stack={stack} is invalid for model.family={family.name}: its models cannot be stacked, "
                          "use stack=1")
    if cfg.kernels != "eager":
        raise ConfigError(f"kernels={cfg.kernels} cannot stack coalitions (its fused modules do not vmap): use "
                          f"kernels=eager with stack={stack}, or stack=1")
    if spec.kind != "local":
        raise ConfigError(f"stack={stack} is invalid with executor={spec.kind} (one task per coalition): use "
                          "executor=local, or stack=1")


def _check_count(check: str | int, budget: int) -> int:
    """The number of self-check coalitions: ``auto`` = 10% of the budget, within 8..48 and at most 20% of it."""
    if str(check).strip().lower() == "auto":
        return min(max(8, round(0.1 * budget)), 48, budget // 5)
    try:
        count = int(float(check))
    except ValueError:
        count = -1
    if count < 0 or float(check) != count:
        raise ConfigError(f"check={check!r} is invalid: use auto, 0 (no self-check) or a number of held-out "
                          "coalitions")
    return count
