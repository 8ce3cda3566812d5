"""Transfer studies: a grid of source / zero-shot / fine-tune / scratch / attack cells run on Ray.

``spec`` reads and checks a study spec (YAML), ``grid`` turns it into cells with dependencies and a
compute estimate, ``cell`` runs one cell as subprocesses of train.py / evaluate.py (standard library
only: Ray ships it to its workers by value), ``runner`` schedules the cells on Ray and reports status,
``report`` aggregates the finished cells into report.md / report.json and plots. CLI: study.py.
"""

from transfer.spec import StudyError, load_spec

__all__ = ["StudyError", "load_spec"]
