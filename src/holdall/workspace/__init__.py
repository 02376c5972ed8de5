"""Experiment records on DuckDB: runs, pipelines, chains, predictions, artifacts and logs.

`WorkspaceStore` is the store; `replay_chain` runs a stored or exported chain on new data;
`ChainBuilder` assembles `save_chain` arguments; `PipelineLibrary` keeps pipeline templates;
`import_workspace` copies a nirs4all workspace (0.7.x or 1.4.x) into a new holdall one.
See docs/workspace.md.
"""

from __future__ import annotations

from holdall.workspace._import import ImportReport, import_workspace
from holdall.workspace._library import PipelineLibrary
from holdall.workspace._replay import ChainBuilder, replay_chain
from holdall.workspace._store import WorkspaceStore

__all__ = [
    "ChainBuilder",
    "ImportReport",
    "PipelineLibrary",
    "WorkspaceStore",
    "import_workspace",
    "replay_chain",
]
