"""Settings for the whole suite."""

from hypothesis import settings

# CI runs on 2 shared cores: a property test's examples are judged by their assertions, not by how fast one ran
settings.register_profile("ffmrec", deadline=None)
settings.load_profile("ffmrec")
