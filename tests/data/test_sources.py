"""One registry of data sources: every name the config accepts has exactly one loader (no if-chain beside it)."""

from shapflow.config.usecase import DATA_SOURCES
from shapflow.data import LOADERS


def test_every_data_source_the_config_accepts_has_one_loader():
    assert sorted(LOADERS) == sorted(DATA_SOURCES)
