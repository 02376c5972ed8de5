"""Objects kept outside a database behind URLs, and the experiments that hold them (seed 002).

A `DataStore` is a dict whose values are also attributes; put one in ``run.fields`` and, when
the experiment is persisted, its values are written as one object under the datastore root
(``options().get("datastore.url")``, by default ``holdall.datastore`` in the working directory)
and only the object's URL is kept in the experiment's record. `DataStoreIO` writes and reads
single objects directly.
"""

from __future__ import annotations

from holdall.objects._bunch import Bunch
from holdall.objects._datastore import DataStore, DataStoreIO
from holdall.objects._experiment import Experiment, Run, Runs
from holdall.objects._options import Options, options
from holdall.objects._session import Session, create_experiment, create_session, load_experiment
from holdall.objects._tmpdir import tmpdir_ctx

__all__ = [
    "Bunch",
    "DataStore",
    "DataStoreIO",
    "Experiment",
    "Options",
    "Run",
    "Runs",
    "Session",
    "create_experiment",
    "create_session",
    "load_experiment",
    "options",
    "tmpdir_ctx",
]
