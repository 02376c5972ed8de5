"""`PipelineLibrary`: reusable pipeline templates kept as JSON files in the workspace.

Templates live in ``<workspace>/library/<category>/<name>/`` as ``pipeline.json`` (the
configuration) and ``metadata.json`` (description, tags, metrics, dates). Names and
categories are single path segments, so a template can never be written outside the library.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from holdall._core.atomic import atomic_write_bytes
from holdall._core.keys import validate_name
from holdall.errors import ArchiveExistsError, KeyNotFoundError

__all__ = ["PipelineLibrary"]


class PipelineLibrary:
    """Reusable pipeline templates with categories and tags.

    Parameters
    ----------
    workspace_path
        The workspace root; templates go to its ``library/`` folder (created on first use).
    """

    def __init__(self, workspace_path: str | os.PathLike[str]) -> None:
        self.workspace_path = Path(workspace_path)
        self.library_path = self.workspace_path / "library"
        self.library_path.mkdir(parents=True, exist_ok=True)

    def save_template(
        self,
        pipeline_config: dict[str, Any],
        name: str,
        category: str = "general",
        description: str = "",
        tags: list[str] | None = None,
        metrics: dict[str, float] | None = None,
        notes: str = "",
        overwrite: bool = False,
    ) -> Path:
        """Save a configuration as template `name` in `category`; return its folder.

        Raises
        ------
        InvalidKeyError
            When `name` or `category` is empty or contains a path separator.
        ArchiveExistsError
            When the template exists and `overwrite` is False.
        """
        folder = (
            self.library_path
            / validate_name(category, what="category")
            / validate_name(name, what="template name")
        )
        if folder.exists() and not overwrite:
            raise ArchiveExistsError(
                f"template {name!r} already exists in category {category!r}; pass overwrite=True to replace it",
                path=str(folder),
            )
        metadata = {
            "name": name, "category": category, "description": description, "tags": list(tags or []),
            "metrics": dict(metrics or {}), "notes": notes,
            "created_at": datetime.now().astimezone().isoformat(),
        }  # fmt: skip
        atomic_write_bytes(folder / "pipeline.json", json.dumps(pipeline_config, indent=2).encode())
        atomic_write_bytes(folder / "metadata.json", json.dumps(metadata, indent=2).encode())
        return folder

    def _find(self, name: str, category: str | None) -> Path:
        validate_name(name, what="template name")
        categories = [validate_name(category, what="category")] if category else sorted(
            p.name for p in self.library_path.iterdir() if p.is_dir()
        )  # fmt: skip
        for candidate in categories:
            folder = self.library_path / candidate / name
            if (folder / "pipeline.json").is_file():
                return folder
        where = f" in category {category!r}" if category else ""
        raise KeyNotFoundError(f"no template {name!r}{where} in {self.library_path}", key=name)

    def load_template(self, name: str, category: str | None = None) -> dict[str, Any]:
        """The configuration of a template (searched in every category when None)."""
        config: dict[str, Any] = json.loads(
            (self._find(name, category) / "pipeline.json").read_text()
        )
        return config

    def get_template_metadata(self, name: str, category: str | None = None) -> dict[str, Any]:
        """The metadata of a template."""
        metadata: dict[str, Any] = json.loads(
            (self._find(name, category) / "metadata.json").read_text()
        )
        return metadata

    def list_templates(
        self, category: str | None = None, tags: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Metadata of every template, optionally of one category and with any of `tags`."""
        found = []
        for meta_file in sorted(self.library_path.glob("*/*/metadata.json")):
            metadata = json.loads(meta_file.read_text())
            if category is not None and metadata.get("category") != category:
                continue
            if tags and not set(tags) & set(metadata.get("tags", [])):
                continue
            found.append(metadata)
        return found

    def delete_template(self, name: str, category: str | None = None) -> None:
        """Delete a template; unknown name raises `KeyNotFoundError`."""
        shutil.rmtree(self._find(name, category))
