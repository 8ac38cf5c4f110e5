"""Versioned span annotations, in modules of one concern each:

- :mod:`~stet.annotations.schema`: what an annotation is made of, written once (its columns
  and motivations), and the SQL generated from it, "the state at an instant" among it;
- :mod:`~stet.annotations.layers`: layers: add, list, rename, merge, and following a layer
  to where its annotations went;
- :mod:`~stet.annotations.model`: annotate, revise, retract; get, history, query;
- :mod:`~stet.annotations.anchoring`: from a span or a quote to checked offsets;
- :mod:`~stet.annotations.w3c`: W3C Web Annotation JSON-LD out and in, brat out;
- :mod:`~stet.annotations.versions`: the versions of a document, and annotations carried to
  a newer one (exact, fuzzy or orphaned), placed by :mod:`~stet.annotations.reanchoring`
  (pure: two texts in, placements out);
- :mod:`~stet.annotations.importer`: the bulk import of W3C files, reading them
  (:mod:`~stet.annotations.files`) here or in a worker process
  (:mod:`~stet.annotations.worker`).

What the package offers is importable from here (``from stet.annotations import query``).
"""

from .importer import CLOCK_SKEW_MINUTES, CLOCK_SKEW_US, Importer, import_files
from .files import parsed_batches
from .layers import add_layer, check_layer_name, layer_id, layers, merge_layers, moves, rename_layer
from .model import (
    Span, annotate, check_motivation, check_tags, document_text, event_details, get, history,
    parse_overlap, query, retract, revise, revisions_digest, rows_digest, threaded,
)
from .schema import FIELDS, INSERT_REVISION, MOTIVATIONS, REVISION_COLUMNS, state_at

__all__ = [
    "CLOCK_SKEW_MINUTES", "CLOCK_SKEW_US", "FIELDS", "INSERT_REVISION", "Importer",
    "MOTIVATIONS", "REVISION_COLUMNS", "Span", "add_layer", "annotate", "check_layer_name",
    "check_motivation", "check_tags", "document_text", "event_details", "get", "history",
    "import_files", "layer_id", "layers", "merge_layers", "moves", "parse_overlap",
    "parsed_batches", "query", "rename_layer", "retract", "revise", "revisions_digest",
    "rows_digest", "state_at", "threaded",
]
