"""The conformance suite: one judge for every fusion-spec backend, ours and strangers'.

A backend author implements an ``Adapter`` (``conformance.adapter``) and runs
``python -m fusion_spec.conformance --backend module:Adapter`` or
``pytest -p fusion_spec.conformance.pytest_plugin --fusion-adapter=module:Adapter``.
The suite compares the backend with the float64 reference ``fusion_ref`` on a
named case catalogue (``fusion_spec.conformance.cases``), checks gradients against finite
differences (``fusion_spec.conformance.gradients``), the distributions of the backend's
own RNG (``conformance.distribution``) and properties every backend must hold
(``fusion_spec.conformance.suite``), and writes a rule-by-rule matrix (``fusion_spec.conformance.report``).
Guide: ``docs/writing-a-backend.md``.
"""

from .adapter import Adapter, NotSupported, load_adapter
from .cases import Case, all_cases, cases_of
from .suite import CATEGORIES, Check, Outcome, all_checks, run_check, select

__all__ = [
    "CATEGORIES",
    "Adapter",
    "Case",
    "Check",
    "NotSupported",
    "Outcome",
    "all_cases",
    "all_checks",
    "cases_of",
    "load_adapter",
    "run_check",
    "select",
]
