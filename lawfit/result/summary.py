"""The printed table of a fit: :class:`Summary`.

What :meth:`FitResult.summary <lawfit.result.FitResult.summary>` returns: a
statsmodels-like table of the law, the goodness of fit, the bootstrap counts, the
parameters with their intervals and the diagnostics, as plain text, HTML or LaTeX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from lawfit.result.fit_result import FitResult


class Summary:
    """Rendered summary of a :class:`FitResult`.

    ``str()`` gives a plain-text table (the law as :attr:`Form.text`, readable in a
    terminal); ``as_html()`` and ``as_latex()`` (the law as LaTeX) are for notebooks
    and papers.
    """

    def __init__(self, result: FitResult, method=None, level=None):
        self.result = result
        self.ci = result.conf_int(method, level)

    def _header(self):
        r = self.result
        g = r.gof
        left = [
            ("Form:", r.form.name),
            ("Inputs:", ", ".join(r.inputs)),
            (
                "Loss / space:",
                f"{r.loss} / {r.space}"
                + (f" (delta={r.huber_delta:.3g})" if r.huber_delta else ""),
            ),
            ("No. points:", str(g["n_obs"])),
            ("No. excluded:", str(r.n_excluded)),
        ]
        not_run = int((r.exclusions.get("reason", pd.Series(dtype=str)) == "status=not_run").sum())
        if not_run:  # grid cells of a sweep not collected yet: not excluded by the fit
            left[-1] = ("No. excluded:", f"{r.n_excluded - not_run} (+{not_run} not run)")
        if r.group:
            left.insert(0, ("Group:", ", ".join(f"{k}={v}" for k, v in r.group.items())))
        right = [
            ("R-squared:", f"{g['r2']:.4f}"),
            ("RMSE:", f"{g['rmse']:.4g}"),
            ("MAPE (%):", f"{g['mape']:.3g}"),
            ("Log-Likelihood:", f"{g['loglik']:.4g}"),
            ("AIC / AICc:", f"{g['aic']:.4g} / {g['aicc']:.4g}"),
            ("BIC:", f"{g['bic']:.4g}"),
        ]
        if r.boot is not None:
            c = r.boot.counts
            right += [
                ("Bootstrap:", f"{r.boot.n_boot} x {r.boot.unit}"),
                ("  at a bound:", str(c["at_bound"])),
                ("  not converged:", f"{c['not_converged']} (kept)"),
                ("  unidentifiable:", f"{c['unidentifiable']} (excluded)"),
            ]
        return left, right

    def _table(self):
        r = self.result
        lvl = self.ci.attrs["level"]
        a = (1 - lvl) / 2
        rows = []
        for p in r.param_names:
            rows.append(
                (p, r.params[p], r.stderr[p], self.ci.loc[p, "low"], self.ci.loc[p, "high"])
            )
        head = ("", "coef", "std err", f"[{a:.3g}", f"{1 - a:.3g}]")
        return head, rows

    def __str__(self) -> str:
        left, right = self._header()
        width = 78
        lines = [
            "=" * width,
            "Parametric law fit (lawfit)".center(width),
            f"Law: {self.result.form.text}".center(width),
            "=" * width,
        ]
        for i in range(max(len(left), len(right))):
            lt = f"{left[i][0]:<14}{left[i][1]:>24}" if i < len(left) else ""
            rt = f"{right[i][0]:<16}{right[i][1]:>22}" if i < len(right) else ""
            lines.append(f"{lt:<38}  {rt}".rstrip())
        lines.append("=" * width)
        head, rows = self._table()
        lines.append(f"{head[0]:<10}{head[1]:>14}{head[2]:>14}{head[3]:>14}{head[4]:>14}")
        lines.append("-" * width)
        for p, v, s, lo, hi in rows:
            lines.append(f"{p:<10}{v:>14.5g}{s:>14.4g}{lo:>14.5g}{hi:>14.5g}")
        lines.append("=" * width)
        lines.append(f"CI: {self.ci.attrs['method']} at {self.ci.attrs['level']:.0%}.")
        flags = self.result.flags
        if flags:
            lines.append("Diagnostics:")
            lines += [f"  [{i + 1}] {f}" for i, f in enumerate(flags)]
        else:
            lines.append("Diagnostics: none.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def as_text(self) -> str:
        """Plain-text table (same as ``str()``)."""
        return str(self)

    def as_html(self) -> str:
        """HTML tables (header, parameters, diagnostics)."""
        import html

        left, right = self._header()
        head, rows = self._table()
        e = html.escape
        out = ['<table class="lawfit-summary"><caption>Parametric law fit (lawfit)</caption>']
        for i in range(max(len(left), len(right))):
            lt = left[i] if i < len(left) else ("", "")
            rt = right[i] if i < len(right) else ("", "")
            out.append(
                f"<tr><th>{e(lt[0])}</th><td>{e(str(lt[1]))}</td>"
                f"<th>{e(rt[0])}</th><td>{e(str(rt[1]))}</td></tr>"
            )
        out.append(
            "</table><table class='lawfit-params'><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr>"
        )
        for p, v, s, lo, hi in rows:
            out.append(
                f"<tr><th>{e(p)}</th><td>{v:.5g}</td><td>{s:.4g}</td>"
                f"<td>{lo:.5g}</td><td>{hi:.5g}</td></tr>"
            )
        out.append("</table>")
        out.append(f"<p>CI: {e(self.ci.attrs['method'])} at {self.ci.attrs['level']:.0%}.</p>")
        flags = self.result.flags
        if flags:
            out.append(
                "<ul class='lawfit-flags'>"
                + "".join(f"<li>{e(str(f))}</li>" for f in flags)
                + "</ul>"
            )
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return self.as_html()

    def as_latex(self) -> str:
        """LaTeX ``tabular`` of the parameter table with the fit statistics as caption."""
        r = self.result
        head, rows = self._table()
        g = r.gof
        lines = [
            r"\begin{table}",
            r"\centering",
            rf"\caption{{${r.form_latex}$; $n={g['n_obs']}$, $R^2={g['r2']:.4f}$, "
            rf"RMSE ${g['rmse']:.3g}$; {self.ci.attrs['method']} "
            rf"{self.ci.attrs['level'] * 100:g}\% CI.}}",
            r"\begin{tabular}{lrrrr}",
            r"\hline",
            " & ".join(["", "coef", "std err", head[3].replace("[", "[\\,"), head[4]]) + r" \\",
            r"\hline",
        ]
        names = {"alpha": r"$\alpha$", "beta": r"$\beta$", "C": "$C$", "b": "$b$"}
        for p, v, s, lo, hi in rows:
            lines.append(
                f"{names.get(p, p.replace('_', chr(92) + '_'))} & {v:.4g} & {s:.3g} & "
                f"{lo:.4g} & {hi:.4g} \\\\"
            )
        lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines)
