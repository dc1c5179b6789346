"""The text table `otel-audit search` prints: one line per record, fixed column widths."""

from __future__ import annotations

# (field of otel_audit/readable.py `record_dict`, widest it is shown)
COLUMNS = (("timestamp", 30), ("origin", 24), ("seq", 10), ("service", 14), ("actor", 14),
          ("action", 18), ("outcome", 8), ("resource", 16), ("body", 60))  # fmt: skip


def record_table(records: list[dict[str, object]]) -> str:
    """Records as aligned columns, each cell cut to its width; origin only when several logs."""
    columns = [(n, w) for n, w in COLUMNS if n != "origin" or len({r["origin"] for r in records}) > 1]
    widths = [min(w, max([len(n), *(len(str(r[n])) for r in records)])) for n, w in columns]

    def line(cells: list[str]) -> str:
        fitted = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(cells, widths, strict=True)]
        return "  ".join(c.ljust(w) for c, w in zip(fitted, widths, strict=True)).rstrip() + "\n"

    out = line([n.upper() for n, _ in columns])
    for r in records:
        out += line([str(r[n]).replace("\n", " ") for n, _ in columns])
    return out
