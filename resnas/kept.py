"""Kept weights: one run of each of the best WEIGHTS_TOP_K designs keeps its timm folder as Optuna artifacts.

The files go to the artifact store beside the storage (resnas.storage.artifact_store). Each is listed in the
study's system attrs under optuna-dashboard's key for a trial's file (``dashboard:artifacts:<trial id>:<id>``),
so the dashboard shows it on the trial's page, and a file removed later is unlisted by setting its key to null,
as the dashboard's own delete does. Not Optuna's ``upload_artifact(trial)``: it lists files in the trial's system
attrs, which Optuna refuses to change once the trial is finished, so a removed file would stay listed and its
download answer 500 (studies written before keep such listings; they are read, never shown as kept).
A trial keeps its files while its design ranks in the top k (``ranked_designs``); :func:`keep_top_weights`
removes the rest. Export and ``best --test`` read them back (:func:`download_kept`), their sha256 checked.
"""

from __future__ import annotations

import json
import mimetypes
import tempfile
import uuid
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from .designs import ranked_designs
from .export import export, verify_weights
from .files import WEIGHTS
from .record import ARTIFACT_FILES
from .storage import artifact_root, remove_artifacts

__all__ = ["WEIGHTS_TOP_K", "download_kept", "keep_top_weights", "keep_weights", "kept_files", "kept_run",
           "ranks_top", "weights_kept"]

WEIGHTS_TOP_K = 3  # designs whose weights are kept as artifacts (one run each)


def _listed(trial_id: int) -> str:
    """The prefix of the study system attrs that list a trial's files (optuna-dashboard's, 0.21)."""
    return f"dashboard:artifacts:{trial_id}:"


def keep_weights(trial: optuna.Trial, store, model, **pretrained_cfg) -> None:
    """Upload ``model`` as the trial's timm local-dir folder (weights and config) to the artifact store."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = export(model, tmp, **pretrained_cfg)
        for name in ARTIFACT_FILES:
            artifact_id = str(uuid.uuid4())
            with open(folder / name, "rb") as f:
                store.write(artifact_id, f)  # the file first: nothing is listed before it can be downloaded
            meta = {"artifact_id": artifact_id, "filename": name, "encoding": None,
                    "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream"}
            trial.storage.set_study_system_attr(trial.study._study_id, _listed(trial._trial_id) + artifact_id,
                                                json.dumps(meta))


def _study_attrs(study: optuna.Study) -> dict:
    return study._storage.get_study_system_attrs(study._study_id)  # Optuna 5 has no public reader


def _artifacts(study: optuna.Study, trial) -> dict[str, str]:
    """The files listed for a trial: file name -> artifact id (the latest upload of a name)."""
    # a FrozenTrial's artifacts are read through its study's storage, which Optuna keeps private
    old = {m.filename: m.artifact_id for m in get_all_artifact_meta(trial, storage=study._storage)}
    metas = (json.loads(v) for k, v in _study_attrs(study).items() if k.startswith(_listed(trial._trial_id)))
    return old | {m["filename"]: m["artifact_id"] for m in metas if m is not None}


def _remove(study: optuna.Study, store, trial) -> None:
    """Unlist a trial's files, then delete them (never listed while missing); old listings cannot be changed."""
    files = _artifacts(study, trial).values()
    for key, value in _study_attrs(study).items():
        if key.startswith(_listed(trial._trial_id)) and json.loads(value) is not None:
            study._storage.set_study_system_attr(study._study_id, key, json.dumps(None))
    remove_artifacts(store, files)


def kept_files(study: optuna.Study, url: str, trial) -> dict[str, str]:
    """A trial's kept files (file name -> artifact id) when every one is still in the artifact store, else {}."""
    files, root = _artifacts(study, trial), artifact_root(url)
    return files if all(n in files and (root / files[n]).is_file() for n in ARTIFACT_FILES) else {}


def weights_kept(study: optuna.Study, url: str, trial) -> bool:
    """Whether a trial's weights are in the artifact store: uploaded, and not removed since (top k)."""
    return bool(kept_files(study, url, trial))


def ranks_top(study: optuna.Study, trial: optuna.trial.FrozenTrial, url: str) -> bool:
    """Whether the design of ``trial`` (finishing, not yet told) ranks among the top WEIGHTS_TOP_K with
    it, and no other run of the design keeps weights. Two objectives: always (the sweep decides)."""
    if len(study.directions) > 1:
        return True
    trials = study.get_trials(deepcopy=False)
    for design in ranked_designs(study, trial)[:WEIGHTS_TOP_K]:
        if trial.number in design.trials:
            return not any(weights_kept(study, url, trials[n]) for n in design.trials if n != trial.number)
    return False


def keep_top_weights(study: optuna.Study, store, url: str, finishing: optuna.trial.FrozenTrial | None = None) -> None:
    """Delete kept weights until exactly the top WEIGHTS_TOP_K designs, ranked as ``resnas best`` ranks them
    (``ranked_designs``), keep one run's each: the first of its runs (repeat 0 first) that keeps them.

    Runs after every kept trial (with ``finishing``, not yet told) and at the end of every search: workers
    finishing at once cannot see each other's trial complete, and the confirmation re-ranks designs by
    their mean. Trials still running (another worker's) are left alone."""
    every = study.get_trials(deepcopy=False)  # the finishing trial is RUNNING here, its artifacts listed
    done = {t.number for t in every if t.state not in (TrialState.RUNNING, TrialState.WAITING)}
    if finishing is not None and len(study.directions) == 1:  # a Pareto front ranks told trials only
        done.add(finishing.number)
    keep = set()
    for design in ranked_designs(study, finishing)[:WEIGHTS_TOP_K]:
        keep.update([n for n in design.trials if n in done and weights_kept(study, url, every[n])][:1])
    for n in done - keep:
        _remove(study, store, every[n])


def kept_run(study: optuna.Study, url: str, design) -> optuna.trial.FrozenTrial | None:
    """The run of a design whose kept weights export writes (its lowest-error one); None when none keeps any."""
    trials = study.get_trials(deepcopy=False)
    runs = sorted((trials[n] for n in design.trials), key=lambda t: (t.values[0], t.number))
    return next((t for t in runs if weights_kept(study, url, t)), None)


def download_kept(study: optuna.Study, url: str, store, trial, folder: Path) -> bool:
    """Write the trial's kept files into ``folder``, their sha256 checked; False when it kept none."""
    files = kept_files(study, url, trial)
    if not files:
        return False
    try:
        for name in ARTIFACT_FILES:
            download_artifact(artifact_store=store, artifact_id=files[name], file_path=str(folder / name))
    except ArtifactNotFound:  # removed since (a worker's top k): as if never kept
        for name in ARTIFACT_FILES:
            (folder / name).unlink(missing_ok=True)
        return False
    kept = files[WEIGHTS]  # a damaged artifact: one line (ExportError), nothing written
    verify_weights(folder / WEIGHTS, f"trial {trial.number}'s kept weights (artifact {kept})")
    return True
