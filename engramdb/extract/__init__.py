"""Extractors: what the engine derives from record texts (entities and relations).

A component beside the stores and the embedders: imports the leaves only. The spaCy
pipeline is loaded lazily, once per process, and offline (an installed model package).
"""

from engramdb.extract.entities import EntityExtractor, load_pipeline
from engramdb.extract.names import alias_links, normalise
from engramdb.extract.process import ExtractionInterrupted, ProcessExtractor, exiting

__all__ = [
    "EntityExtractor",
    "ExtractionInterrupted",
    "ProcessExtractor",
    "alias_links",
    "exiting",
    "load_pipeline",
    "normalise",
]
