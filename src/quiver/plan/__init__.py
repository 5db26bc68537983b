"""``quiver plan``: SLO-driven configuration search (variants x batching x instances x threads)."""

from __future__ import annotations

from quiver.plan.model import ComputeCurve, Prediction, fit_curve, predict, simulate
from quiver.plan.search import Budget, Decision, Goal, LoadPoint, Measurer, Planner, ProbeResult
from quiver.plan.space import Candidate, SearchSpace, Variant, cost_per_million

__all__ = [
    "Budget",
    "Candidate",
    "ComputeCurve",
    "Decision",
    "Goal",
    "LoadPoint",
    "Measurer",
    "Planner",
    "Prediction",
    "ProbeResult",
    "SearchSpace",
    "Variant",
    "cost_per_million",
    "fit_curve",
    "predict",
    "simulate",
]
