"""The report's sections, one module per analysis step: results in, text, tables and figures out.

Each `*_section(result, results)` turns one step's result (and the results before it) into an
`interp.views.report_html.Section`. They are views: they never see a model, and the report's step
cache does not depend on them (changing a section's prose re-renders without recomputing).
"""

from interp.views.sections.audit import audit_section
from interp.views.sections.cost import cost_section
from interp.views.sections.gradients import gradients_section
from interp.views.sections.heads import heads_section
from interp.views.sections.locator_trust import locator_trust_section
from interp.views.sections.memorization import memorization_section
from interp.views.sections.perturbation import perturbation_section
from interp.views.sections.restoration import restoration_section
from interp.views.sections.unlearning import unlearning_section

__all__ = [
    "audit_section",
    "cost_section",
    "gradients_section",
    "heads_section",
    "locator_trust_section",
    "memorization_section",
    "perturbation_section",
    "restoration_section",
    "unlearning_section",
]
