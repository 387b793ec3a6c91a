"""Figure of the audit's faithfulness: per attack, how well its scores separate systems that hold the
targets from systems that never held them (interp.audit.faithfulness)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.audit.faithfulness import Faithfulness
from interp.views.export import paper_style


def figure_faithfulness(result: Faithfulness) -> go.Figure:
    """AUC (present vs absent items) per attack on the attacked EM and log10 p, then the residual's, beside the
    unattacked EM's (the baseline: every system appears to forget); 0.5 = no separation, 1 = perfect."""
    names = [*result.audit.attacks, "residual"]
    em = [result.auc_em[a] for a in result.audit.attacks] + [result.auc_residual]
    lp = [result.auc_log10p[a] for a in result.audit.attacks] + [result.auc_residual_log10p]
    fig = go.Figure(
        [
            go.Bar(name="on EM", x=names, y=em, text=[f"{v:.2f}" for v in em], textposition="outside"),
            go.Bar(name="on log10 p", x=names, y=lp, text=[f"{v:.2f}" for v in lp], textposition="outside"),
        ]
    )
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="no separation", annotation_position="bottom right")
    fig.add_hline(
        y=result.auc_unattacked,
        line_dash="dash",
        annotation_text=f"unattacked EM {result.auc_unattacked:.2f}",
        annotation_position="top left",
    )
    fig.update_layout(
        barmode="group",
        title=(
            f"Audit faithfulness: AUC of {result.n_present} items that hold the text vs {result.n_absent} that "
            "never did"
        ),
        yaxis=dict(title="AUC", range=[0, 1.1]),
    )
    return paper_style(fig)
