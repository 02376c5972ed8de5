"""`SchemaBuilder`: describe per-file stores (groups of arrays, metadata, routing) as a JSON dict.

The dict `build` returns is what every `DataStorage.set_schema` takes and what the merger
reads: groups with a primary dimension and arrays (dims, dtype, rules), and a metadata block
of file-level and categorical definitions plus routing rules (seed 001).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, cast

import numpy as np

from holdall._core.atomic import atomic_write_bytes
from holdall.errors import KeyNotFoundError, SchemaError
from holdall.schema._rules import (
    DEFAULT_ROUTING,
    ROUTES,
    RULE_NAMES,
    Route,
    metadata_block,
    metadata_definition,
    metadata_problem,
    route_metadata,
)

__all__ = ["SPECIAL_PROCESSING", "SchemaBuilder", "SchemaGroup"]

#: Special processing a group may ask of the merger.
SPECIAL_PROCESSING = frozenset({"matrix_flattening"})


def _check_name(name: object, what: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or "\x00" in name
        or name in (".", "..")
    ):
        raise SchemaError(
            f"{what} name must be a non-empty string without '/' or NUL, got {name!r}",
            key=str(name),
            expected="a name such as 'faces'",
            got=name,
        )
    return name


def _check_rules(rules: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(rules) - RULE_NAMES)
    if unknown:
        raise SchemaError(
            f"{where}: unknown rule(s) {unknown}; the rules are {sorted(RULE_NAMES)}",
            key=where,
            expected=sorted(RULE_NAMES),
            got=unknown,
        )
    low, high = rules.get("min_value"), rules.get("max_value")
    for rule in ("min_value", "max_value"):
        value = rules.get(rule)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value != value
        ):
            raise SchemaError(f"{where}: {rule} must be a number, got {value!r}", key=where)
    if low is not None and high is not None and low > high:
        raise SchemaError(f"{where}: min_value {low} is above max_value {high}", key=where)
    if "values" in rules and not isinstance(rules["values"], list | tuple):
        raise SchemaError(f"{where}: values must be a list, got {rules['values']!r}", key=where)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in rules.items() if v is not None}


def _check_dtype(dtype: object, where: str, *, allow_str: bool) -> str:
    if allow_str and isinstance(dtype, str) and dtype.lower() in ("str", "string", "bool"):
        return dtype.lower()
    try:
        return str(np.dtype(cast(Any, dtype)).name)
    except TypeError as err:
        raise SchemaError(
            f"{where}: unknown dtype {dtype!r} (expected a numpy dtype name such as 'float32')",
            key=where,
            got=dtype,
        ) from err


class SchemaGroup:
    """One group of a schema: arrays sharing a primary dimension (``faces`` along ``face``).

    Returned by `SchemaBuilder.create_group`; edits act on the builder it came from.
    """

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self._spec = spec

    @property
    def primary_dimension(self) -> str:
        """The dimension the merger concatenates this group's arrays along."""
        return str(self._spec["primary_dimension"])

    @property
    def special_processing(self) -> str | None:
        """``"matrix_flattening"`` or None."""
        value = self._spec.get("special_processing")
        return None if value is None else str(value)

    def create_array(
        self,
        name: str,
        dimensions: list[str],
        dtype: str = "float32",
        description: str | None = None,
        **rules: Any,
    ) -> dict[str, Any]:
        """Declare array `name` with its dimension names and dtype; `rules` as in `RULE_NAMES`.

        Raises
        ------
        SchemaError
            A bad name, dimension list, dtype or rule.
        """
        where = f"array {self.name}/{name}"
        _check_name(name, "array")
        if isinstance(dimensions, str) or not all(
            isinstance(d, str) and d for d in dimensions or ()
        ):
            raise SchemaError(
                f"{where}: dimensions must be a list of names such as ['face'], got {dimensions!r}",
                key=name,
                got=dimensions,
            )
        spec: dict[str, Any] = {
            "dims": list(dimensions),
            "dtype": _check_dtype(dtype, where, allow_str=False),
        }
        if description is not None:
            spec["description"] = description
        spec.update(_check_rules(rules, where))
        self._spec["arrays"][name] = spec
        return copy.deepcopy(spec)

    def get_array(self, name: str) -> dict[str, Any]:
        """The declaration of array `name` (a copy); `KeyNotFoundError` when not declared."""
        if name not in self._spec["arrays"]:
            raise KeyNotFoundError(
                f"group {self.name!r} declares no array {name!r} (it has {self.list_arrays()})",
                key=name,
            )
        return copy.deepcopy(self._spec["arrays"][name])

    def remove_array(self, name: str) -> None:
        """Remove array `name`; `KeyNotFoundError` when not declared."""
        self.get_array(name)
        del self._spec["arrays"][name]

    def list_arrays(self) -> list[str]:
        """Names of the declared arrays, in declaration order."""
        return list(self._spec["arrays"])

    def __repr__(self) -> str:
        return f"<SchemaGroup {self.name!r} along {self.primary_dimension!r}: {self.list_arrays()}>"


class SchemaBuilder:
    """Build a schema dict: groups of arrays, metadata definitions and routing rules.

    Parameters
    ----------
    domain
        What the schema describes (``"CAD_analysis"``).
    version
        The schema's own version string.
    description
        Free text.

    Examples
    --------
    >>> builder = SchemaBuilder(domain="CAD_analysis")
    >>> faces = builder.create_group("faces", "face", "Face data")
    >>> _ = faces.create_array("face_areas", ["face"], "float32")
    >>> builder.build()["groups"]["faces"]["arrays"]["face_areas"]["dims"]
    ['face']
    """

    def __init__(
        self, domain: str = "generic_data", version: str = "1.0", description: str | None = None
    ) -> None:
        self.domain = domain
        self.version = version
        self.description = description
        self._groups: dict[str, dict[str, Any]] = {}
        self._metadata: dict[str, Any] = {
            "file_level": {},
            "categorical": {},
            "routing_rules": dict(DEFAULT_ROUTING),
        }

    # ----------------------------------------------------------------- groups

    def create_group(
        self,
        name: str,
        primary_dimension: str,
        description: str | None = None,
        special_processing: str | None = None,
    ) -> SchemaGroup:
        """Add (or replace) group `name` whose arrays concatenate along `primary_dimension`."""
        _check_name(name, "group")
        if not isinstance(primary_dimension, str) or not primary_dimension:
            raise SchemaError(
                f"group {name!r}: primary_dimension must be a dimension name, got {primary_dimension!r}",
                key=name,
            )
        if special_processing is not None and special_processing not in SPECIAL_PROCESSING:
            raise SchemaError(
                f"group {name!r}: unknown special_processing {special_processing!r}; "
                f"known: {sorted(SPECIAL_PROCESSING)} or None",
                key=name,
                got=special_processing,
            )
        spec: dict[str, Any] = {"primary_dimension": primary_dimension, "arrays": {}}
        if description is not None:
            spec["description"] = description
        if special_processing is not None:
            spec["special_processing"] = special_processing
        self._groups[name] = spec
        return SchemaGroup(name, spec)

    def get_group(self, name: str) -> SchemaGroup:
        """Group `name`; `KeyNotFoundError` when there is none."""
        if name not in self._groups:
            raise KeyNotFoundError(
                f"schema has no group {name!r} (groups: {self.list_groups()})", key=name
            )
        return SchemaGroup(name, self._groups[name])

    def remove_group(self, name: str) -> None:
        """Remove group `name` and its arrays; `KeyNotFoundError` when there is none."""
        self.get_group(name)
        del self._groups[name]

    def list_groups(self) -> list[str]:
        """Group names, in creation order."""
        return list(self._groups)

    # ----------------------------------------------------------------- metadata

    def define_file_metadata(
        self,
        name: str,
        dtype: str,
        description: str | None = None,
        required: bool = False,
        **rules: Any,
    ) -> None:
        """Declare a file-level metadata field (one column of the .infoset)."""
        self._define("file_level", name, dtype, description, required, rules)

    def define_categorical_metadata(
        self,
        name: str,
        dtype: str = "str",
        description: str | None = None,
        values: list[Any] | None = None,
        labels: list[str] | None = None,
        required: bool = False,
        **rules: Any,
    ) -> None:
        """Declare a categorical metadata field (rows of the .attribset).

        `values` lists the allowed values and `labels` their names (same length).
        """
        if labels is not None and (values is None or len(labels) != len(values)):
            raise SchemaError(
                f"categorical metadata {name!r}: labels need values of the same length, got "
                f"{len(labels)} labels for {None if values is None else len(values)} values",
                key=name,
            )
        if values is not None:
            rules["values"] = values
        if labels is not None:
            rules["labels"] = list(labels)
        self._define("categorical", name, dtype, description, required, rules)

    def _define(
        self,
        route: Route,
        name: str,
        dtype: str,
        description: str | None,
        required: bool,
        rules: dict[str, Any],
    ) -> None:
        where = f"metadata {name!r}"
        if not isinstance(name, str) or not name or "\x00" in name:
            raise SchemaError(
                f"metadata name must be a non-empty string, got {name!r}", key=str(name)
            )
        labels = rules.pop("labels", None)
        definition: dict[str, Any] = {"dtype": _check_dtype(dtype, where, allow_str=True)}
        if description is not None:
            definition["description"] = description
        definition["required"] = bool(required)
        definition.update(_check_rules(rules, where))
        if labels is not None:
            definition["labels"] = labels
        other = "categorical" if route == "file_level" else "file_level"
        self._metadata[other].pop(name, None)
        self._metadata[route][name] = definition

    def set_metadata_routing_rules(
        self,
        file_level_patterns: list[str] | None = None,
        categorical_patterns: list[str] | None = None,
        default_numeric: str = "file_level",
        default_categorical: str = "categorical",
        default_string: str = "categorical",
    ) -> None:
        """Set the wildcard patterns (``"size_*"``, case-insensitive) and type defaults."""
        for label, value in (
            ("default_numeric", default_numeric),
            ("default_categorical", default_categorical),
            ("default_string", default_string),
        ):
            if value not in ROUTES:
                raise SchemaError(
                    f"{label} must be 'file_level' or 'categorical', got {value!r}",
                    key=label,
                    expected=ROUTES,
                    got=value,
                )
        for label, patterns in (
            ("file_level_patterns", file_level_patterns),
            ("categorical_patterns", categorical_patterns),
        ):
            if patterns is not None and (
                isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns)
            ):
                raise SchemaError(f"{label} must be a list of strings, got {patterns!r}", key=label)
        self._metadata["routing_rules"] = {
            "file_level_patterns": list(file_level_patterns or []),
            "categorical_patterns": list(categorical_patterns or []),
            "default_numeric": default_numeric,
            "default_categorical": default_categorical,
            "default_string": default_string,
        }

    def get_metadata_routing(self, field: str, value: Any = None) -> Route:
        """Where metadata `field` goes: ``"file_level"`` or ``"categorical"`` (see `route_metadata`)."""
        return route_metadata(self._metadata, field, value)

    def list_metadata_fields(self) -> dict[str, list[str]]:
        """The defined metadata fields by route: ``{"file_level": [...], "categorical": [...]}``."""
        return {route: list(self._metadata[route]) for route in ROUTES}

    def validate_metadata_field(self, name: str, value: Any) -> bool:
        """True when `value` fits the definition of `name` (or `name` is not defined)."""
        defined = metadata_definition(self._metadata, name)
        return defined is None or metadata_problem(defined[1], value) is None

    def validate_metadata_schema(self) -> bool:
        """True when the metadata definitions and routing rules are consistent."""
        return not self._problems()

    def _problems(self) -> list[str]:
        problems = []
        for route in ROUTES:
            for name, definition in self._metadata[route].items():
                labels, values = definition.get("labels"), definition.get("values")
                if labels is not None and (values is None or len(labels) != len(values)):
                    problems.append(f"metadata {name!r}: labels and values differ in length")
                if values is not None:
                    bad = [v for v in values if metadata_problem({"dtype": definition["dtype"]}, v)]
                    if bad:
                        problems.append(
                            f"metadata {name!r}: allowed value {bad[0]!r} is not a {definition['dtype']}"
                        )
        for name, group in self._groups.items():
            if not group["arrays"]:
                problems.append(f"group {name!r} declares no arrays")
            if group.get("special_processing") == "matrix_flattening":
                for array, spec in group["arrays"].items():
                    if len(spec["dims"]) < 2:
                        problems.append(
                            f"group {name!r} flattens matrices, but {array!r} has "
                            f"{len(spec['dims'])} dimension(s) (needs n x n x ...)"
                        )
        return problems

    # ----------------------------------------------------------------- output

    def build(self) -> dict[str, Any]:
        """The schema as a plain JSON dict.

        Raises
        ------
        SchemaError
            (also a `ValueError`) when the schema is inconsistent: no groups, a group without
            arrays, labels without matching values, a flattened group of 1-d arrays.
        """
        problems = ([] if self._groups else ["the schema has no groups"]) + self._problems()
        if problems:
            raise SchemaError(
                "invalid schema: " + "; ".join(problems),
                expected="a consistent schema",
                got=problems,
            )
        return self._as_dict()

    def _as_dict(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"domain": self.domain, "version": self.version}
        if self.description is not None:
            schema["description"] = self.description
        schema["groups"] = copy.deepcopy(self._groups)
        schema["metadata"] = copy.deepcopy(self._metadata)
        return schema

    def to_json(self, indent: int | None = 2) -> str:
        """The schema as JSON text (not validated: `build` validates)."""
        return json.dumps(self._as_dict(), indent=indent, allow_nan=False)

    def save_to_file(self, path: str | os.PathLike[str]) -> None:
        """Write the schema as JSON to `path`, atomically."""
        atomic_write_bytes(Path(path), self.to_json().encode())

    @classmethod
    def load_from_file(cls, path: str | os.PathLike[str]) -> SchemaBuilder:
        """A builder holding the schema saved at `path` (either metadata-block shape)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SchemaError(f"cannot read a schema from {os.fspath(path)}: {err}") from err
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, schema: dict[str, Any]) -> SchemaBuilder:
        """A builder holding `schema` (a built dict, or HOOPS AI output with nested metadata)."""
        if not isinstance(schema, dict) or not isinstance(schema.get("groups", {}), dict):
            raise SchemaError(
                "a schema is a JSON object with a 'groups' object",
                expected="{'groups': {...}, 'metadata': {...}}",
                got=type(schema).__name__,
            )
        builder = cls(
            str(schema.get("domain", "generic_data")),
            str(schema.get("version", "1.0")),
            schema.get("description"),
        )
        for name, group in schema.get("groups", {}).items():
            if not isinstance(group, dict) or not isinstance(group.get("arrays", {}), dict):
                raise SchemaError(
                    f"schema group {name!r} must be an object with 'arrays'", key=name
                )
            created = builder.create_group(
                name,
                str(group.get("primary_dimension", name)),
                group.get("description"),
                group.get("special_processing"),
            )
            for array, spec in group.get("arrays", {}).items():
                extra = {
                    k: v
                    for k, v in spec.items()
                    if k not in ("dims", "dimensions", "dtype", "description")
                }
                created.create_array(
                    array,
                    list(spec.get("dims", spec.get("dimensions", []))),
                    spec.get("dtype", "float32"),
                    spec.get("description"),
                    **extra,
                )
        block = metadata_block(schema)
        for route in ROUTES:
            for name, definition in block[route].items():
                builder._metadata[route][name] = copy.deepcopy(definition)
        builder._metadata["routing_rules"] = dict(block["routing_rules"])
        return builder

    def copy(self) -> SchemaBuilder:
        """An independent copy of this builder."""
        return SchemaBuilder.from_dict(self._as_dict())

    # ----------------------------------------------------------------- templates

    @classmethod
    def list_templates(cls) -> list[str]:
        """Names accepted by `from_template`."""
        from holdall.schema._templates import TEMPLATES

        return sorted(TEMPLATES)

    @classmethod
    def from_template(cls, name: str) -> SchemaBuilder:
        """A builder preloaded with template `name` (``"cad_basic"``, ``"cad_advanced"``)."""
        from holdall.schema._templates import TEMPLATES

        if name not in TEMPLATES:
            raise KeyNotFoundError(
                f"no schema template {name!r}; templates: {sorted(TEMPLATES)}", key=name
            )
        builder = cls()
        TEMPLATES[name](builder)
        return builder

    @classmethod
    def extend_template(cls, name: str, domain: str | None = None) -> SchemaBuilder:
        """`from_template`, renamed to `domain`: a starting point to add groups and fields to."""
        builder = cls.from_template(name)
        if domain is not None:
            builder.domain = domain
        return builder

    def __repr__(self) -> str:
        return f"<SchemaBuilder {self.domain!r} v{self.version}: groups {self.list_groups()}>"
