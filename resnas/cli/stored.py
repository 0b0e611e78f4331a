"""The studies a command reads: the storage it names, and the errors of the layers below as one line."""

from __future__ import annotations

from ..config import SearchError
from ..data import DataError
from ..export import ExportError
from ..space import SpaceError
from ..storage import StudyError, existing_storage, load_study
from .common import UserError

__all__ = ["USER_ERRORS", "loaded_study", "readable_storage"]

USER_ERRORS = (SpaceError, StudyError, DataError, ExportError, SearchError)  # each shown as one line with exit code 2


def readable_storage(storage: str | None) -> str:
    """The storage URL to read (``--storage``, ``$RESNAS_STORAGE`` or the default); it must exist."""
    try:
        return existing_storage(storage)
    except StudyError as e:
        raise UserError(str(e)) from None


def loaded_study(storage: str | None, study_name: str | None):
    """The study and its storage's URL; a one-line error when there is no such study."""
    try:
        return load_study(storage, study_name)
    except StudyError as e:
        raise UserError(str(e)) from None
