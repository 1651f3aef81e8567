"""Reference summaries: JSONL under ``data/labels/``, matched to sections.

One object per line: ``{"doc": "raw/x.md", "heading_path": "A / B", "summary": "..."}`` with
optional ``"part": 2`` (for a section split into parts) and optional ``"section_id"`` (wins when
present). Every problem is reported with file and line; strictness decides whether it fails the run.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summ_assets.core.artifacts import sha256_file, stable_json_hash


class LabelError(ValueError):
    """Label problems under strict mode; the message lists every problem with file:line."""


@dataclass(frozen=True)
class Label:
    doc: str
    heading_path: str
    summary: str
    file: str
    line: int
    part: int | None = None
    section_id: str | None = None


@dataclass
class LabelReport:
    labels: list[Label] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def problem(self, kind: str, msg: str) -> None:
        self.counts[kind] += 1
        self.problems.append(msg)


def load_labels(labels_dir: Path, root_for_names: Path | None = None) -> LabelReport:
    rep = LabelReport()
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        return rep
    for path in sorted(labels_dir.rglob("*.jsonl")):
        name = path.relative_to(root_for_names).as_posix() if root_for_names else str(path)
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            rep.problem("bad_json", f"{name}: invalid UTF-8 ({exc.reason}); re-save as UTF-8")
            continue
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                rep.problem("bad_json", f"{name}:{n}: bad JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                rep.problem("bad_json", f"{name}:{n}: expected a JSON object, got {type(obj).__name__}")
                continue
            missing = [k for k in ("doc", "summary") if not isinstance(obj.get(k), str)]
            if "heading_path" not in obj and "section_id" not in obj:
                missing.append("heading_path")
            if missing:
                rep.problem("bad_field", f"{name}:{n}: missing or non-string field(s): {', '.join(missing)}")
                continue
            if not obj["summary"].strip():
                rep.problem("empty_summary", f"{name}:{n}: field 'summary' is empty")
                continue
            part = obj.get("part")
            if part is not None and not (isinstance(part, int) and part >= 1):
                rep.problem("bad_field", f"{name}:{n}: field 'part' must be a positive integer")
                continue
            rep.labels.append(
                Label(
                    doc=obj["doc"],
                    heading_path=str(obj.get("heading_path", "")).strip(),
                    summary=obj["summary"].strip(),
                    file=name,
                    line=n,
                    part=part,
                    section_id=obj.get("section_id"),
                )
            )
    return rep


def match_labels(rep: LabelReport, sections: list[dict[str, Any]], known_docs: set[str]) -> dict[str, Label]:
    """{section_id: label}. Unmatched / ambiguous / duplicate labels are recorded in `rep.problems`."""
    by_id = {s["section_id"]: s for s in sections}
    by_path: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in sections:
        by_path[(s["doc_id"], s["heading_path"])].append(s)
    matched: dict[str, Label] = {}
    for lab in rep.labels:
        where = f"{lab.file}:{lab.line}"
        if lab.section_id:
            cands = [by_id[lab.section_id]] if lab.section_id in by_id else []
        else:
            cands = by_path.get((lab.doc, lab.heading_path), [])
            if lab.part is not None:
                cands = [s for s in cands if s["part"] == lab.part]
        if not cands:
            kind = "unknown_doc" if lab.doc not in known_docs else "unmatched"
            rep.problem(
                kind,
                f"{where}: no section matches doc={lab.doc!r} heading_path={lab.heading_path!r}"
                + (f" part={lab.part}" if lab.part else "")
                + ("" if lab.doc in known_docs else " (no such document)"),
            )
            continue
        if len(cands) > 1:
            rep.problem(
                "ambiguous",
                f"{where}: {len(cands)} sections match doc={lab.doc!r} heading_path={lab.heading_path!r} "
                '(the section was split into parts: add "part": N, or use "section_id")',
            )
            continue
        sid = cands[0]["section_id"]
        if sid in matched:
            first = matched[sid]
            rep.problem(
                "duplicate",
                f"{where}: duplicate label for the section already labelled at {first.file}:{first.line}",
            )
            continue
        matched[sid] = lab
    return matched


def enforce(rep: LabelReport, strictness: str) -> None:
    if rep.problems and strictness == "fail":
        shown = "\n  ".join(rep.problems[:200])
        more = f"\n  ... and {len(rep.problems) - 200} more" if len(rep.problems) > 200 else ""
        raise LabelError(
            f"{len(rep.problems)} label problem(s) ({dict(rep.counts)}):\n  {shown}{more}\n"
            "Fix the label files, or set label strictness to 'warn' to skip bad labels."
        )


def labels_hash(labels_dir: Path) -> str:
    """Hash of every ``*.jsonl`` labels file under `labels_dir` (relative names + contents)."""
    labels_dir = Path(labels_dir)
    files = sorted(labels_dir.rglob("*.jsonl")) if labels_dir.is_dir() else []
    return stable_json_hash([(p.relative_to(labels_dir).as_posix(), sha256_file(p)) for p in files])[:24]
