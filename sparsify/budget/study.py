"""The Optuna study behind the budget search, kept in the sweep dir so a search resumes.

One objective, the speedup on `budget.engine` (maximised), with the accuracy budget as an
Optuna constraint (`drop - max_drop <= 0`, `Trial.set_constraint`) that the TPE sampler uses: constrained TPE ranks
every trial within the budget above every trial outside it, and outside it by how far. The
study is a JSON-lines journal (`JournalFileBackend`): no database, readable by any later
process, safe to append to after a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsify.budget.trials import DONE, FAILED, TrialResult
from sparsify.errors import SparsifyError

STUDY_DIR = "budget"  # under the sweep dir: the journal and what the search was started with
JOURNAL = "study.journal"
SEARCH = "search.json"
STUDY_NAME = "budget"


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SparsifyError(
            "the budget search needs Optuna: pip install 'sparsify[budget]' (or `make venv`)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log says what each trial did
    return optuna


def open_study(sweep_dir: Path, seed: int, startup_trials: int) -> Any:
    """Create the study in `sweep_dir`, or load the one already there."""
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = sweep_dir / STUDY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
    sampler = optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=startup_trials,
        multivariate=True,  # optim level and INT8 format interact: model them together
        constant_liar=True,  # trials launched together are told apart while they run
    )
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )


def has_study(sweep_dir: Path) -> bool:
    return (sweep_dir / STUDY_DIR / JOURNAL).is_file()


def write_search(sweep_dir: Path, key: str, overrides: list[str]) -> None:
    path = sweep_dir / STUDY_DIR / SEARCH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "overrides": overrides}, indent=2), encoding="utf-8")


def find_earlier(parent: Path, key: str, exclude: Path) -> Path | None:
    """The latest sweep dir under `parent` holding a study of the same search (`key`)."""
    found = []
    for search in parent.glob(f"*/{STUDY_DIR}/{SEARCH}"):
        sweep_dir = search.parent.parent
        try:
            same = json.loads(search.read_text(encoding="utf-8")).get("key") == key
        except (OSError, ValueError):
            continue
        if same and sweep_dir.resolve() != exclude.resolve() and has_study(sweep_dir):
            found.append(sweep_dir)
    return max(found, key=lambda p: (search_time(p), str(p)), default=None)


def search_time(sweep_dir: Path) -> float:
    return (sweep_dir / STUDY_DIR / JOURNAL).stat().st_mtime


def is_counted(trial: Any) -> bool:
    """A trial that ran to an outcome (done or failed) counts toward budget.trials; one left
    RUNNING or marked interrupted by a crash does not (it is run again)."""
    return trial.user_attrs.get("status") in (DONE, FAILED)


def results_of(study: Any) -> list[TrialResult]:
    return [
        TrialResult.from_attrs(t.number, t.params, t.user_attrs)
        for t in study.trials
        if is_counted(t)
    ]


def tell(study: Any, trial: Any, result: TrialResult, max_drop: float) -> None:
    """Record the outcome with the trial, then finish it (done: its speedup, with the budget
    as its constraint, feasible at <= 0; else failed)."""
    for key, value in result.to_attrs().items():
        trial.set_user_attr(key, value)
    optuna = import_optuna()
    if result.status == DONE and result.drop is not None:
        # a trial whose every package lost too much (the guard shipped dense) is outside the
        # budget for the sampler, by its packages' smallest drop: it went too far
        drop = result.drop if result.overshoot is None else result.overshoot
        trial.set_constraint("drop", drop - max_drop)
        study.tell(trial, float(result.speedup or 0.0))
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
