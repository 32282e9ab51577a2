"""Runs: every run under the folder with status, dataset, split, progress and mIoU."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from ael_app import state

from ael.runs import list_runs

st.title("Runs")
sel = state.selection()


def _table() -> None:
    with state.guard("the runs table"):
        try:
            rows = list_runs(sel.runs_dir)
        except FileNotFoundError as err:
            st.error(str(err))
            return
        if not rows:
            st.info(f"No runs in `{sel.runs_dir}` yet. Start one with `ael train`; it appears here on its own.")
            return
        frame = pd.DataFrame({
            "run": [r.run_id for r in rows],
            "status": [r.status for r in rows],
            "dataset": [r.dataset or "" for r in rows],
            "split": [r.split or "" for r in rows],
            "progress": [r.progress for r in rows],
            "step": [r.step for r in rows],
            "of": [r.total_steps for r in rows],
            "last mIoU": [None if r.last_miou is None else 100 * r.last_miou for r in rows],
            "best mIoU": [None if r.best_miou is None else 100 * r.best_miou for r in rows],
            "started": [time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "" for r in rows],
            "problem": [r.error or "" for r in rows],
        })
        st.dataframe(
            frame, hide_index=True, key="runs_table",
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
                "step": st.column_config.NumberColumn(help="The latest step the run logged (the Training page shows "
                                                           "the same number)"),
                "last mIoU": st.column_config.NumberColumn(format="%.2f"),
                "best mIoU": st.column_config.NumberColumn(format="%.2f"),
                "problem": st.column_config.TextColumn(width="large", help="In full below the table"),
            },
        )
        counts = frame["status"].value_counts()
        st.caption(" · ".join(f"{n} {s}" for s, n in counts.items()) + " — pick a run (and runs to compare) "
                   "in the sidebar.")
        problems = [r for r in rows if r.error]
        if problems:
            # A table cell cuts a long reason (a stop says how to resume): each one in full here.
            st.subheader(f"Problems ({len(problems)})")
            for r in problems:
                st.markdown(f"**{r.run_id}** · {r.status}")
                st.code(r.error, language=None, wrap_lines=True)


state.live_panel(_table, key="runs_panel")
