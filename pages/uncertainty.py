"""How every page shows a run's uncertainty (render only; the rules live in
``msa_core.analysis.ranking``): the noise warning at the top of a run's page and the ranking table.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from msa_core.analysis.ranking import (
    NOISE_LEGEND,
    STATISTIC,
    STATISTIC_HELP,
    UnitRanking,
    noise_summary,
    noise_verdict,
)
from msa_core.result import ModesResult

MARKS_CAPTION = (
    f"Grey dots mark values {NOISE_LEGEND} (not distinguishable from no contribution at 95%)."
)


def noise_banner(result: ModesResult) -> None:
    """The run's noise verdict as a warning (nothing when its signal exceeds its noise), and one
    line on its units within noise and ranks resolved."""
    verdict = noise_verdict(result)
    if verdict is not None:
        st.warning(verdict, icon=":material/warning:")
    st.caption(noise_summary(result))


def top_line(ranked: UnitRanking, k: int = 8) -> None:
    """The ranking's first ``k`` units in one line: ``Top units by Shapley value: #1 n5 · #2 n9 …``
    (a rank range where the order is not resolved)."""
    labels = list(ranked.labels().values())[:k]
    st.markdown(
        f"**Top units by {STATISTIC}**: "
        + " · ".join(label.partition(" (")[0] for label in labels)
        + (" …" if len(ranked.units) > k else ""),
        help=STATISTIC_HELP,
    )


def noise_warnings(results: dict[str, ModesResult]) -> None:
    """One warning per named run whose noise exceeds its signal (a page showing several runs)."""
    for name, result in results.items():
        verdict = noise_verdict(result)
        if verdict is not None:
            st.warning(f"**{name}**: {verdict}", icon=":material/warning:")


def ranking_table(ranked: UnitRanking, key: str, height: int = 380) -> None:
    """The ranking as a table: rank (a range where the order is not resolved), unit, the statistic
    with its stderr, and whether it is within noise."""
    st.dataframe(
        pd.DataFrame(ranked.rows()),
        hide_index=True,
        height=height,
        key=key,
        column_config={
            "rank": st.column_config.TextColumn(
                help="A range (e.g. 2-5) where the unit's order is not resolved at 95%"
            ),
            STATISTIC: st.column_config.NumberColumn(format="%.4g", help=STATISTIC_HELP),
            "stderr": st.column_config.NumberColumn(format="%.2g"),
            "within noise": st.column_config.CheckboxColumn(help=NOISE_LEGEND),
        },
    )
