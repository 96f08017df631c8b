"""`hydra/sweeper=sparsify_budget`: the fastest package within `budget.max_drop` points.

A Hydra Sweeper: it asks the Optuna study (`study.py`) for each trial's settings, turns them
into overrides, and runs them through whatever launcher the config names
(`self.launcher.launch`), so trials run locally, on joblib, Ray or Slurm like any sweep job.
Each trial is judged from its run dir (`trials.py`); the study lives in the sweep dir, so a
crash or Ctrl-C loses only the trials that were running.

The code is here; hydra_plugins/sparsify_budget_sweeper gives the class the name Hydra
accepts (a plugin class must live under `hydra_plugins.`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from sparsify.budget import results as out
from sparsify.budget import set_outcome
from sparsify.budget.space import Dimension, merge_spaces, parse_space, suggest, to_overrides
from sparsify.budget.study import (
    find_earlier,
    has_study,
    is_counted,
    open_study,
    results_of,
    tell,
    write_search,
)
from sparsify.budget.trials import FAILED, TrialResult, read_trial, select
from sparsify.config.metrics import KL, resolve_metric
from sparsify.errors import Problem, SparsifyError, ValidationError

log = logging.getLogger("sparsify.budget")

# keys that bound or steer the search but do not change what it searches for: left out of the
# key that `budget.resume=true` matches earlier searches by
_NOT_IN_KEY = ("budget.trials", "budget.max_time", "budget.resume", "budget.keep", "hydra.")


@dataclass
class BudgetSweeperConf:
    _target_: str = "hydra_plugins.sparsify_budget_sweeper.budget_sweeper.BudgetSweeper"
    # overrides every trial gets (conf/config.yaml sets benchmark.num_threads per launcher)
    params: dict[str, Any] | None = None
    parallel: int = 1  # trials launched together (the joblib preset: its n_jobs)
    startup_trials: int = 3  # random trials before TPE models the results
    # the default search space per experiment, and what a model family and a recipe add to it
    spaces: dict[str, Any] = field(default_factory=dict)
    family_spaces: dict[str, Any] = field(default_factory=dict)
    recipe_spaces: dict[str, Any] = field(default_factory=dict)


class BudgetSweeper(Sweeper):
    def __init__(
        self,
        params: dict[str, Any] | None = None,
        parallel: int = 1,
        startup_trials: int = 3,
        spaces: dict[str, Any] | None = None,
        family_spaces: dict[str, Any] | None = None,
        recipe_spaces: dict[str, Any] | None = None,
    ) -> None:
        params, spaces, family_spaces, recipe_spaces = (
            _plain(x) for x in (params, spaces, family_spaces, recipe_spaces)
        )
        self.params = {k: v for k, v in params.items() if v not in (None, "", "null")}
        self.parallel = max(1, int(parallel))
        self.startup_trials = max(1, int(startup_trials))
        self.spaces, self.family_spaces = spaces, family_spaces
        self.recipe_spaces = recipe_spaces
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- settings ---------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        cfg = self.config
        assert cfg is not None
        budget = OmegaConf.to_container(cfg.budget, resolve=True)
        assert isinstance(budget, dict)
        use_case = cfg.use_case
        metric, problem = resolve_metric(
            budget["metric"], str(use_case.name), str(use_case.family), str(use_case.metric)
        )
        problems = []
        if problem is not None:
            problems.append(
                Problem("budget.metric", budget["metric"], problem.message, problem.fix)
            )
        elif metric == KL:
            problems.append(
                Problem(
                    "budget.metric",
                    budget["metric"],
                    "is lower-is-better and has no dense value to lose points from",
                    f"use the use case's metric ({use_case.metric}) or another it reports",
                )
            )
        if float(budget["max_drop"]) < 0:
            problems.append(
                Problem("budget.max_drop", budget["max_drop"], "is negative", "give points >= 0")
            )
        if int(budget["trials"]) < 1:
            problems.append(Problem("budget.trials", budget["trials"], "is below 1", "give >= 1"))
        if problems:
            raise ValidationError(problems)
        return {**budget, "metric": metric, "max_drop": float(budget["max_drop"])}

    def _dimensions(self, settings: dict[str, Any]) -> list[Dimension]:
        cfg = self.config
        assert cfg is not None
        experiment, family = str(cfg.experiment.name), str(cfg.use_case.family)
        recipe = str(cfg.get("recipe") or cfg.experiment.get("recipe") or "")
        space = merge_spaces(
            self.spaces.get(experiment),
            self.family_spaces.get(family),
            self.recipe_spaces.get(recipe),
            settings["space"],
        )
        return parse_space(space)

    def _fixed(self, arguments: list[str], dims: list[Dimension], engine: str) -> list[str]:
        """The command's overrides every trial shares: sweeps refused, searched keys left to the
        search, `budget.engine` added to the engines benchmarked."""
        assert self.hydra_context is not None and self.config is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        searched = {d.key for d in dims}
        fixed, problems = [], []
        for override in parser.parse_overrides(arguments):
            key = override.get_key_element().lstrip("+~")
            if override.is_sweep_override():
                problems.append(
                    Problem(
                        key,
                        override.input_line,
                        "is a sweep: the budget search chooses the values itself",
                        f"give one value, or search it: budget.space.{key}=[a,b] or "
                        f"budget.space.{key}={{low: 0, high: 1}}",
                    )
                )
            elif key in searched:
                log.info("%s is searched (budget.space): the given value is ignored", key)
            else:
                fixed.append(override.input_line)
        if problems:
            raise ValidationError(problems)
        fixed += [f"{k}={v}" for k, v in self.params.items() if k not in searched]
        engines = [str(e) for e in self.config.benchmark.engines]
        if engine not in engines:
            log.info("budget.engine %s is benchmarked too (added to benchmark.engines)", engine)
            fixed.append(f"benchmark.engines=[{','.join([*engines, engine])}]")
        return fixed

    def _sweep_dir(self, settings: dict[str, Any], key: str) -> Path:
        """hydra.sweep.dir, or with budget.resume=true the latest earlier search of the same
        command (then every job and the sweep report go there)."""
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).expanduser().resolve()
        resume = settings["resume"]
        if resume is False and has_study(sweep_dir):
            raise SparsifyError(
                f"{sweep_dir} already holds a budget search and budget.resume=false: give "
                "another hydra.sweep.dir, or budget.resume=true to go on with it"
            )
        if resume is True and not has_study(sweep_dir):
            earlier = find_earlier(sweep_dir.parent, key, sweep_dir)
            if earlier is None:
                log.info(
                    "budget.resume=true: no earlier search of this command under %s; starting one",
                    sweep_dir.parent,
                )
            else:
                log.info("Resuming the budget search in %s", earlier)
                self.config.hydra.sweep.dir = str(earlier)  # the sweep report reads it
                return earlier.resolve()
        return sweep_dir

    # -- the search -------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self._sweep(arguments)
        except SparsifyError as exc:  # a mistake in the budget keys: no traceback
            print(f"sparsify: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print(
                "sparsify: budget search interrupted. Finished trials are kept in its study; "
                "run the same command with budget.resume=true (or the same hydra.sweep.dir) "
                "to go on from there.",
                file=sys.stderr,
            )
            sys.exit(130)

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        settings = self._settings()
        dims = self._dimensions(settings)
        fixed = self._fixed(list(arguments), dims, str(settings["engine"]))
        key = _search_key(fixed, dims)
        sweep_dir = self._sweep_dir(settings, key)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        write_search(sweep_dir, key, fixed)
        redirect = [f"hydra.sweep.dir={sweep_dir}"]
        study = open_study(sweep_dir, int(self.config.seed), self.startup_trials)
        log.info(
            "Budget search: the fastest on %s within %g point(s) of %s, over %s",
            settings["engine"],
            settings["max_drop"],
            settings["metric"],
            "; ".join(d.describe() for d in dims),
        )
        _requeue_interrupted(study)
        started, ran = time.monotonic(), 0
        elapsed_before = float(study.user_attrs.get("elapsed_s", 0.0))
        limit_s = None if settings["max_time"] is None else float(settings["max_time"]) * 3600
        while True:
            counted = sum(is_counted(t) for t in study.trials)
            remaining = int(settings["trials"]) - counted
            spent = elapsed_before + time.monotonic() - started
            if remaining <= 0:
                break
            if limit_s is not None and spent >= limit_s:
                log.info(
                    "budget.max_time (%g h) reached after %d trial(s)",
                    settings["max_time"],
                    counted,
                )
                break
            # the first trial runs alone: it trains and caches the dense baseline the others reuse
            first = not any(t.user_attrs.get("status") for t in study.trials)
            ran += self._run_batch(
                study,
                dims,
                fixed + redirect,
                1 if first else min(self.parallel, remaining),
                settings,
            )
            study.set_user_attr("elapsed_s", elapsed_before + time.monotonic() - started)
        return self._finish(study, sweep_dir, settings, ran)

    def _run_batch(
        self, study: Any, dims: list[Dimension], fixed: list[str], n: int, settings: dict[str, Any]
    ) -> int:
        next_job = 1 + max((int(t.user_attrs.get("job", -1)) for t in study.trials), default=-1)
        asked = []
        for _ in range(n):
            trial = study.ask()
            params = suggest(trial, dims)
            job = trial.user_attrs.get("job")
            if job is None:  # a resumed trial keeps its job number: its run dir, its stages
                job, next_job = next_job, next_job + 1
                trial.set_user_attr("job", job)
            asked.append((int(job), trial, params))
        for group in _consecutive(sorted(asked, key=lambda a: a[0])):
            batch = [[*fixed, *to_overrides(params)] for _, _, params in group]
            for job, trial, params in group:
                log.info("Trial %d (job %d): %s", trial.number, job, " ".join(to_overrides(params)))
            returns: Sequence[JobReturn | None]
            why = None
            try:
                returns = self.launcher.launch(batch, initial_job_idx=group[0][0])
            except Exception as exc:  # the launcher failed: these trials failed, the search goes on
                log.exception("Launching trials %s failed", [t.number for _, t, _ in group])
                returns, why = [None] * len(group), f"launcher: {type(exc).__name__}: {exc}"
            for (_, trial, params), ret in zip(group, returns, strict=True):
                result = self._judge(trial.number, params, ret, settings)
                result.error = why or result.error
                tell(study, trial, result, settings["max_drop"])
                shown = (
                    f"drop {result.drop:g}, speedup {result.speedup:g}x"
                    if result.status != FAILED
                    else f"failed: {result.error}"
                )
                if result.overshoot is not None:
                    shown += (
                        f" (the dense model: every package lost {result.overshoot:g} points or"
                        " more; outside the budget to the search)"
                    )
                log.info("Trial %d: %s", trial.number, shown)
        return len(asked)

    def _judge(
        self, number: int, params: dict[str, Any], ret: JobReturn | None, settings: dict[str, Any]
    ) -> TrialResult:
        if ret is None or ret.hydra_cfg is None:
            return TrialResult(number, params, status=FAILED, error="the job did not start")
        run_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        result = read_trial(
            number, params, run_dir, str(settings["engine"]), str(settings["metric"])
        )
        if ret.status == JobStatus.FAILED and result.status != FAILED:
            result.status, result.error = FAILED, f"{ret._return_value!r}"
        return result

    def _finish(
        self, study: Any, sweep_dir: Path, settings: dict[str, Any], ran: int
    ) -> dict[str, Any]:
        from sparsify.budget.held_out import measure_on_test

        results = results_of(study)
        selection = select(results, settings["max_drop"])
        best = out.copy_best(sweep_dir, selection.chosen)
        test = measure_on_test(selection.chosen, settings) if selection.chosen else None
        shown = {
            k: settings[k] for k in ("max_drop", "metric", "engine", "trials", "max_time", "keep")
        }
        data = out.write_budget_json(sweep_dir, shown, selection, len(results), test)
        atomic_csv = sweep_dir / out.TRIALS_CSV
        atomic_csv.write_text(
            out.trials_csv(results, selection, settings["max_drop"]), encoding="utf-8"
        )
        freed = out.free_trials(results, selection, settings["keep"])
        if freed:
            log.info(
                "budget.keep=%s: freed the ONNX files of %d other trial(s)",
                settings["keep"],
                len(freed),
            )
        text = out.message(data)
        print(f"\n{text}\nTrials: {atomic_csv}" + (f"\nChosen package: {best}" if best else ""))
        set_outcome(text if selection.chosen is None else None)
        return data


def _plain(node: Any) -> dict[str, Any]:
    """A DictConfig Hydra passed in -> plain dicts and lists (the space parser checks types)."""
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        plain = OmegaConf.to_container(node, resolve=True)
        return plain if isinstance(plain, dict) else {}
    return dict(node)


def _search_key(fixed: list[str], dims: list[Dimension]) -> str:
    shared = sorted(o for o in fixed if not o.lstrip("+~").startswith(_NOT_IN_KEY))
    blob = json.dumps({"overrides": shared, "space": [d.describe() for d in dims]})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _requeue_interrupted(study: Any) -> None:
    """Trials a crash or Ctrl-C left running: closed as failed (not counted) and asked again
    with the same settings and job number, so each goes on in its own run dir."""
    from sparsify.budget.study import import_optuna

    state = import_optuna().trial.TrialState
    for trial in study.trials:
        if trial.state == state.RUNNING:
            study.tell(trial.number, state=state.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"job": trial.user_attrs.get("job")})
            log.info("Trial %d was interrupted: it runs again", trial.number)


def _consecutive(asked: list[tuple[int, Any, Any]]) -> list[list[tuple[int, Any, Any]]]:
    """Runs of consecutive job numbers: one launch each (a launcher numbers jobs from
    initial_job_idx up)."""
    groups: list[list[tuple[int, Any, Any]]] = []
    for item in asked:
        if groups and groups[-1][-1][0] + 1 == item[0]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups
