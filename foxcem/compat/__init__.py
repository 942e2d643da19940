"""Other libraries' spellings over foxcem's classes: the migration paths.

* :mod:`foxcem.compat.max` — ``import foxcem.compat.max as maxi``: the MAX library's
  ``ExplanationGenerator`` and its loss, optimizer and gradient component classes;
* :mod:`foxcem.compat.foxai` — FoXAI's ``CVClassificationExplainers`` names and its
  ``FoXaiExplainer`` context manager.

foxcem's own API is unchanged by them; ``docs/migration.rst`` shows both side by side.
"""
