"""Ground truth that outlives a machine: held-out retrainings kept as a versioned file in the repository.

A fixture holds, for one use case and one held-out design (alpha, count, seeds), every retrained coalition's
mask, training seed, utility and properties, plus the hash of what produced them: the full-training recipe,
the sampling and the property (``worker.config_stamp``, the stamp results files carry). ``shapflow evaluate
lds`` reads the fixture of its use case and alpha instead of retraining those coalitions; a fixture whose
hash differs from the current recipe is refused with the commands that regenerate it. Written from a
worker's results file by ``shapflow evaluate fixture``.

Beside each fixture lies its ledger (``ledger_path``: the same name, ``.jsonl``): every finished retraining of
the design as one worker results line (job key, mask, seed, purpose ``heldout-<alpha>``, utility, properties,
device, the recipe stamp), appended as workers finish, in the repository. The fixture is rewritten from it,
complete or not (``write_fixture``: it says which of the design's coalitions and seeds it holds), and
``pending_jobs`` is what the ledger still lacks, so the work goes on after a restart or on another machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np

from shapflow.config import ConfigError, UseCaseConfig, identity
from shapflow.data import load_data
from shapflow.evaluation.groundtruth import RetrainJob
from shapflow.evaluation.plans import heldout_jobs
from shapflow.evaluation.worker import config_stamp, done_in, read_results
from shapflow.shapley.masks import HELDOUT_SEED, heldout_masks

__all__ = ["FORMAT", "GroundTruth", "fixture_path", "ledger_path", "load_fixture", "pending_jobs", "recipe_hash",
           "write_fixture"]

FORMAT = "shapflow-groundtruth/1"


def fixture_path(use_case: str, alpha: float) -> Path:
    """Where the packaged fixture of ``use_case``'s held-out coalitions at ``alpha`` lives."""
    return Path(str(resources.files("shapflow") / "evaluation" / "fixtures" / f"{use_case}-heldout-{alpha:.2f}.json"))


def ledger_path(use_case: str, alpha: float) -> Path:
    """Where the packaged ledger (every finished retraining, one JSON line each) of that fixture lives."""
    return fixture_path(use_case, alpha).with_suffix(".jsonl")


def pending_jobs(cfg: UseCaseConfig, alpha: float, count: int, seeds: tuple[int, ...], results: Path,
                 version: str) -> list[RetrainJob]:
    """The held-out retrainings of the design (``count`` coalitions at ``alpha`` x ``seeds``) that ``results``
    does not hold under ``cfg``'s recipe, seed by seed (every coalition of the first seed before the next seed:
    partial results then cover the most coalitions, which the LDS's interval needs most)."""
    n = len(load_data(cfg.data, cfg.assets).names)
    _, jobs = heldout_jobs(cfg, n, alpha, count, seeds, version)
    done = done_in(jobs, read_results(results), config_stamp(cfg)) if Path(results).is_file() else set()
    return sorted((job for job in jobs if job.key not in done), key=lambda job: seeds.index(job.seed))


def recipe_hash(cfg: UseCaseConfig) -> str:
    """What must match for a retrained property to still be the ground truth: training, sampling, property."""
    return identity("groundtruth", config_stamp(cfg))


@dataclass(frozen=True)
class GroundTruth:
    """A fixture's rows: {(mask "0101...", seed): (utility, properties)}, with where they came from."""

    path: Path
    use_case: str
    alpha: float
    rows: dict[tuple[str, int], tuple[float, dict[str, float]]] = field(repr=False)
    meta: dict = field(default_factory=dict)

    def truth(self, masks: np.ndarray, seeds: tuple[int, ...]) -> np.ndarray:
        """(n_seeds, m) utilities of the coalitions ``masks`` (bool (m, n)); NaN where the fixture has no row."""
        text = ["".join("1" if b else "0" for b in mask) for mask in masks]
        return np.array([[self.rows.get((t, s), (np.nan, {}))[0] for t in text] for s in seeds])

    def records(self, jobs: list[RetrainJob]) -> list[dict]:
        """Results-file records answering those ``jobs`` the fixture holds (keyed by the jobs' current keys)."""
        stamp = self.meta["stamp"]
        return [{"job": asdict(job), "utility": self.rows[(job.mask, job.seed)][0],
                 "properties": self.rows[(job.mask, job.seed)][1], "timings": {},
                 "device": f"fixture ({self.meta.get('computed_on', '?')})", "stamp": stamp}
                for job in jobs if (job.mask, job.seed) in self.rows]


    def coverage(self, jobs: list[RetrainJob]) -> str:
        """One line: how many of ``jobs`` (the held-out ones) the fixture answers, and its rows that answer none
        (another count, seed or design, or a hand-edited mask): reported, never dropped silently."""
        wanted = {(job.mask, job.seed) for job in jobs}
        used = wanted & set(self.rows)
        unmatched = sorted(set(self.rows) - wanted)
        line = f"fixture {self.path} answers {len(used)} of the {len(wanted)} held-out retrainings"
        if unmatched:
            mask, seed = unmatched[0]
            line += (f"; {len(unmatched)} of its {len(self.rows)} rows match none of them and are not used (e.g. "
                     f"mask {mask} seed {seed}: another --count or --seeds, or an edited row)")
        return line


def _regenerate(cfg: UseCaseConfig, alpha: float) -> str:
    return (f"regenerate it: `shapflow evaluate lds --use-case {cfg.name} --alpha {alpha} --export-jobs jobs.json`, "
            "`python -m shapflow.evaluation.worker jobs.json --out results.jsonl --workers 0` (or --device cuda "
            f"--stack 64), then `shapflow evaluate fixture --use-case {cfg.name} --alpha {alpha} --results "
            "results.jsonl`; or run without it: --fixture none")


def _schema_problem(payload: object) -> str | None:
    """What makes ``payload`` not a ground-truth file of ``FORMAT`` (None when it is one): the keys and their
    types, then each row's mask (0/1, one per contributor), seed (an integer), utility (a finite number) and
    properties (names to numbers)."""
    if not isinstance(payload, dict):
        return "it is not a JSON object"
    if payload.get("format") != FORMAT:
        return f"not a shapflow ground-truth file (format {payload.get('format')!r})"
    types = {"use_case": str, "contributors": list, "alpha": (int, float), "count": int, "seeds": list,
             "recipe_hash": str, "stamp": str, "rows": list}
    wrong = [key for key, kind in types.items() if not isinstance(payload.get(key), kind)]
    if wrong:
        return f"key(s) {', '.join(wrong)} missing or of the wrong type"
    n = len(payload["contributors"])
    for number, row in enumerate(payload["rows"], start=1):
        problem = _row_problem(row, n)
        if problem:
            return f"row {number} ({json.dumps(row)[:80]}): {problem}"
    return None


def _row_problem(row: object, n: int) -> str | None:
    if not isinstance(row, dict) or set(row) != {"mask", "seed", "utility", "properties"}:
        return "a row has exactly the keys mask, seed, utility, properties"
    mask, seed, utility, properties = row["mask"], row["seed"], row["utility"], row["properties"]
    if not isinstance(mask, str) or len(mask) != n or set(mask) - {"0", "1"}:
        return f"mask must be {n} characters 0/1 (one per contributor)"
    if isinstance(seed, bool) or not isinstance(seed, int):
        return "seed must be an integer"
    numbers = [utility, *properties.values()] if isinstance(properties, dict) else None
    if numbers is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                                  for v in numbers):
        return "utility and every property must be finite numbers"
    return None


def load_fixture(cfg: UseCaseConfig, alpha: float, path: Path | None = None) -> GroundTruth | None:
    """The fixture of ``cfg``'s held-out coalitions at ``alpha`` (``path``, else the packaged one); None when
    there is none. Raises ConfigError when it was computed under another recipe, or does not follow the schema
    (``_schema_problem``: a hand-edited file is checked, never half-read)."""
    path = Path(path) if path is not None else fixture_path(cfg.name, alpha)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        payload, problem = None, f"not valid JSON ({err})"
    else:
        problem = _schema_problem(payload)
    if problem:
        raise ConfigError(f"fixture={path} is invalid: {problem}; {_regenerate(cfg, alpha)}")
    if payload["recipe_hash"] != recipe_hash(cfg) or payload.get("stamp") != config_stamp(cfg):
        raise ConfigError(f"fixture={path} is stale: it was retrained under another training, sampling or property "
                          f"recipe than {cfg.name}'s current one (recipe hash {payload['recipe_hash'][:12]} != "
                          f"{recipe_hash(cfg)[:12]}); {_regenerate(cfg, alpha)}")
    if abs(payload["alpha"] - alpha) > 1e-9:
        raise ConfigError(f"fixture={path} holds alpha={payload['alpha']}, not {alpha}")
    rows = {(r["mask"], int(r["seed"])): (float(r["utility"]), dict(r["properties"])) for r in payload["rows"]}
    meta = {k: v for k, v in payload.items() if k != "rows"}
    return GroundTruth(path, payload["use_case"], payload["alpha"], rows, meta)


def write_fixture(cfg: UseCaseConfig, alpha: float, count: int, seeds: tuple[int, ...], results: Path, out: Path,
                  *, command: str = "") -> GroundTruth:
    """Write the fixture of ``count`` held-out coalitions at ``alpha`` x ``seeds`` from a worker's results file.

    Only lines stamped with ``cfg``'s current recipe are taken, the first line of each (coalition, seed); the
    fixture holds those it finds (``coverage`` and the LDS say how many), at least one.
    """
    names = load_data(cfg.data, cfg.assets).names
    masks = heldout_masks(len(names), alpha, count)
    wanted = {("".join("1" if b else "0" for b in mask), int(seed)) for mask in masks for seed in seeds}
    stamp = config_stamp(cfg)
    found: dict[tuple[str, int], dict] = {}
    for record in read_results(results):
        key = (record["job"]["mask"], int(record["job"]["seed"]))
        if record.get("stamp") == stamp and key in wanted and key not in found:
            found[key] = record
    if not found:
        raise ConfigError(f"results={results} holds none of the {len(wanted)} held-out retrainings under the "
                          "current recipe: run the worker on their job file (`shapflow evaluate fixture --jobs`)")
    rows = [{"mask": mask, "seed": seed, "utility": found[(mask, seed)]["utility"],
             "properties": found[(mask, seed)]["properties"]} for mask, seed in sorted(found)]
    devices = sorted({found[key]["device"] for key in found})
    payload = {"format": FORMAT, "use_case": cfg.name, "contributors": list(names), "alpha": alpha,
               "count": count, "seeds": list(seeds), "heldout_seed": HELDOUT_SEED, "recipe_hash": recipe_hash(cfg),
               "stamp": stamp, "computed_on": ", ".join(devices), "created": date.today().isoformat(),
               "command": command, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return load_fixture(cfg, alpha, out)

