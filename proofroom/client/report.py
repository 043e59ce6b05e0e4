"""The producer's view as a terminal table (``proofroom status``)."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("TITLE", "<"),
    ("ID", "<"),
    ("PEND", ">"),
    ("APPR", ">"),
    ("CHG", ">"),
    ("REJ", ">"),
    ("OPEN PINS", ">"),
    ("ROUNDS/PIN", ">"),
    ("TO APPROVAL", ">"),
    ("IN REVIEW", ">"),
)
MAX_TITLE = 40


def duration(seconds: float | None) -> str:
    """``45s``, ``12m 05s``, ``3h 20m``, ``2d 04h``; ``-`` for none."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _title(text: str) -> str:
    text = " ".join(text.split()) or "(untitled)"
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1] + "…"


def _rounds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def status_table(body: dict[str, Any]) -> str:
    """A table of every session in a ``GET /api/producer`` answer, and a totals line."""
    rows = []
    for s in body["sessions"]:
        v = s["versions"]
        rows.append(
            (
                _title(s["title"]),
                s["id"],
                str(v["pending"]),
                str(v["approved"]),
                str(v["changes_requested"]),
                str(v["rejected"]),
                str(s["open_pins"]),
                _rounds(s["rounds_per_pin"]),
                duration(s["median_time_to_approval"]),
                duration(s["time_in_review"]),
            )
        )
    t = body["totals"]
    v = t["versions"]
    total = (
        f"TOTAL ({t['sessions']} sessions)",
        "",
        str(v["pending"]),
        str(v["approved"]),
        str(v["changes_requested"]),
        str(v["rejected"]),
        str(t["open_pins"]),
        _rounds(t["rounds_per_pin"]),
        duration(t["median_time_to_approval"]),
        "",
    )
    table = [tuple(name for name, _ in COLUMNS), *rows, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.ljust(w) if align == "<" else cell.rjust(w)
            for cell, w, (_, align) in zip(row, widths, COLUMNS, strict=True)
        ]
        return "  ".join(cells).rstrip()

    out = [line(table[0]), *(line(r) for r in rows)]
    if not rows:
        out.append("(no sessions match)")
    out += ["-" * len(out[0]), line(total)]
    return "\n".join(out)
