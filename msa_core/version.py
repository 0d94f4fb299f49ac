"""The package version, recorded in every result's meta and in run fingerprints."""

__version__ = "0.1.0"
