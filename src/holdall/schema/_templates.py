"""Ready-made schemas for B-rep CAD encodings (`SchemaBuilder.from_template`).

``cad_basic`` holds what a face-adjacency graph model needs (faces, edges, graph, face-pair
distance histograms); ``cad_advanced`` adds the sampled UV grids and per-face labels, which
is what ``holdall demo`` encodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from holdall.schema._builder import SchemaBuilder

__all__ = ["TEMPLATES"]


def _cad_basic(builder: SchemaBuilder) -> None:
    builder.domain = "CAD_analysis"
    builder.description = "B-rep faces, edges, face-adjacency graph and face-pair histograms"
    faces = builder.create_group("faces", "face", "Per-face geometry")
    faces.create_array("face_indices", ["face"], "int32", "Face index")
    faces.create_array("face_areas", ["face"], "float32", "Surface area", min_value=0)
    faces.create_array("face_types", ["face"], "int32", "Surface type code", min_value=0)
    faces.create_array(
        "face_normals", ["face", "coordinate"], "float32", "Normal at the face centre"
    )
    edges = builder.create_group("edges", "edge", "Per-edge geometry")
    edges.create_array("edge_indices", ["edge"], "int32", "Edge index")
    edges.create_array("edge_lengths", ["edge"], "float32", "Curve length", min_value=0)
    edges.create_array("edge_types", ["edge"], "int32", "Curve type code", min_value=0)
    graph = builder.create_group("graph", "graph_edge", "Face-adjacency graph")
    graph.create_array("edges_source", ["graph_edge"], "int32", "Source face of each edge")
    graph.create_array("edges_destination", ["graph_edge"], "int32", "Target face of each edge")
    graph.create_array("num_nodes", ["graph"], "int64", "Faces in the graph", min_value=0)
    faceface = builder.create_group(
        "faceface", "face_pair", "Face-pair histograms (n x n per part)", "matrix_flattening"
    )
    faceface.create_array(
        "a3_distance", ["face", "face", "a3_bin"], "float32", "A3 angle histogram"
    )
    faceface.create_array(
        "d2_distance", ["face", "face", "d2_bin"], "float32", "D2 distance histogram"
    )
    faceface.create_array("extended_adjacency", ["face", "face"], "float32", "Graph distance")
    builder.define_file_metadata("size_cadfile", "int64", "CAD file size in bytes", min_value=0)
    builder.define_file_metadata(
        "processing_time", "float64", "Encoding time in seconds", min_value=0
    )
    builder.define_categorical_metadata("file_label", "int32", "Part class")
    builder.set_metadata_routing_rules(
        file_level_patterns=["size_*", "duration_*", "processing_*", "flow_name"],
        categorical_patterns=["*_label", "category", "type", "material_*"],
    )


def _cad_advanced(builder: SchemaBuilder) -> None:
    _cad_basic(builder)
    builder.description = "cad_basic plus UV-grid samples and per-face labels"
    faces = builder.get_group("faces")
    faces.create_array(
        "face_uv_grids",
        ["face", "u", "v", "uv_channel"],
        "float32",
        "Points, normals, mask on a UV grid",
    )
    faces.create_array("face_labels", ["face"], "int32", "Per-face segmentation label", min_value=0)
    builder.get_group("edges").create_array(
        "edge_u_grids", ["edge", "t", "u_channel"], "float32", "Points sampled along the curve"
    )


TEMPLATES: dict[str, Callable[[SchemaBuilder], None]] = {
    "cad_basic": _cad_basic,
    "cad_advanced": _cad_advanced,
}
