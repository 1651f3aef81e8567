"""`summ-assets` command: refresh (stale-only materialization), demo, eval-full, report, summarize,
compare, serve, config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from summ_assets.refresh import refresh
from summ_assets.refresh import say as _say


def _env() -> None:
    from summ_assets.core.offline import use_offline_env

    use_offline_env()


def latest_artifact(instance: Any, asset: str) -> Path | None:
    """The `artifact` path of `asset`'s newest materialization on `instance` (None before the first)."""
    import dagster as dg

    ev = instance.get_latest_materialization_event(dg.AssetKey(asset))
    meta = ev.asset_materialization.metadata if ev and ev.asset_materialization else {}
    path = getattr(meta.get("artifact"), "value", None)
    return Path(str(path)) if path else None


def latest_report(asset: str = "evaluation_report") -> Path | None:
    import dagster as dg

    return latest_artifact(dg.DagsterInstance.get(), asset)


def print_report(asset: str = "evaluation_report") -> int:
    path = latest_report(asset)
    if path is None:
        make = "make eval-full" if asset == "evaluation_report_full" else "make demo"
        print(f"no {asset} yet: run `{make}`", file=sys.stderr)
        return 1
    print(f"\nEvaluation report: {path / 'report.md'} (also report.json, predictions.parquet, *.png)\n")
    print((path / "report.md").read_text())
    return 0


def _fail(cmd: str, message: str) -> int:
    print(f"summ-assets {cmd}: error: {message}", file=sys.stderr)
    return 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


def summarize_files(
    files: list[str],
    model: str | None = None,
    fmt: str = "md",
    output: str | None = None,
    quantize: str | None = None,
) -> int:
    """Summarize each file section by section with the promoted student (or `model`)."""
    _env()
    import json

    from tqdm import tqdm

    from summ_assets.core.chunking import FrontMatterError
    from summ_assets.core.documents import DocumentError
    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import ServingError, Summarizer, read_input_file, resolve_model_path, section_row

    profile = get_profile()
    docs: list[tuple[str, str]] = []
    for f in files:  # every file is validated before the model is loaded
        try:
            docs.append((f, read_input_file(f, profile.data.max_file_bytes)))
        except DocumentError as exc:
            return _fail("summarize", str(exc))
    try:
        summ = Summarizer(resolve_model_path(model), profile=profile, quantize=quantize)
    except ServingError as exc:
        return _fail("summarize", str(exc))
    chunked = []
    for f, text in docs:
        try:
            chunked.append((f, summ.chunk(text, doc_id=f)))
        except FrontMatterError as exc:
            return _fail("summarize", str(exc))
    texts = [s.text for _, secs in chunked for s in secs]
    with tqdm(total=len(texts), desc="summarizing", unit="section", file=sys.stderr) as bar:
        outs, stats = summ.generate(texts, progress=bar.update)
    results, k = [], 0
    for f, secs in chunked:
        results.append((f, [section_row(s, o) for s, o in zip(secs, outs[k : k + len(secs)], strict=True)]))
        k += len(secs)

    if fmt == "json":
        text_out = (
            json.dumps(
                {
                    "model": str(summ.path),
                    "n_sections": len(texts),
                    "tokens_per_s": round(stats["tokens_per_s"], 2),
                    "documents": [{"file": f, "sections": rows} for f, rows in results],
                },
                ensure_ascii=False,
                indent=2,
            )
            + "\n"
        )
    elif fmt == "jsonl":
        text_out = "".join(
            json.dumps({"file": f, **row}, ensure_ascii=False) + "\n" for f, rows in results for row in rows
        )
    else:
        lines = []
        for f, rows in results:
            lines.append(f"# {f}\n")
            for row in rows:
                head = row["heading_path"] or "(before the first heading)"
                if row["n_parts"] > 1:
                    head += f" (part {row['part']}/{row['n_parts']})"
                lines.append(f"- **{head}** → {_one_line(row['summary']) or '(empty summary)'}")
            lines.append("")
        text_out = "\n".join(lines)
    if output:
        Path(output).write_text(text_out, encoding="utf-8")
    else:
        sys.stdout.write(text_out)
        sys.stdout.flush()
    print(
        f"{len(texts)} sections, {stats['tokens_per_s']:.1f} tok/s "
        f"({len(docs)} file{'s' if len(docs) != 1 else ''}, model {summ.path})",
        file=sys.stderr,
    )
    return 0


def serve_http(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    max_bytes: int | None = None,
    timeout_s: float | None = None,
    quantize: str | None = None,
    max_queue_sections: int | None = None,
) -> int:
    """Load the model once and serve POST /summarize, POST /compare, GET /health, GET /model with uvicorn."""
    _env()
    import logging

    from summ_assets.serving import ServingError, Summarizer, resolve_model_path

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summ = Summarizer(resolve_model_path(model), quantize=quantize)
    except ServingError as exc:
        return _fail("serve", str(exc))
    from summ_assets.serving import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, serve
    from summ_assets.serving.http import DEFAULT_MAX_QUEUE_SECTIONS

    if host not in ("127.0.0.1", "localhost", "::1"):
        _say(f"WARNING: binding {host}: the API has no authentication; anyone who can reach it can use it")
    _say(
        f"serving {summ.path} on http://{host}:{port} (POST /summarize, POST /compare, POST /reload, GET /health, GET /model)"
    )
    from summ_assets.serving.loader import promoted_pointer

    def load(path: str | None = None) -> Summarizer:
        return Summarizer(path or resolve_model_path(model), quantize=quantize)

    if model is None:
        _say("serving the promoted student: a newly promoted one is loaded and switched to without a restart")
    serve(
        summ,
        host=host,
        port=port,
        max_bytes=max_bytes or DEFAULT_MAX_BYTES,
        timeout_s=timeout_s or DEFAULT_TIMEOUT_S,
        max_queue_sections=max_queue_sections or DEFAULT_MAX_QUEUE_SECTIONS,
        reloader=load,
        watch=(promoted_pointer(), load) if model is None else None,
    )
    return 0


FAIL_ON_CHOICES = ("added", "removed", "edited", "moved", "renamed")


def _fail_on(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in FAIL_ON_CHOICES]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{value!r}: a comma-separated list of {', '.join(FAIL_ON_CHOICES)}")
    return items


def _compare_pairs(old: str, new: str) -> list[tuple[str, Path | None, Path | None]]:
    """(label, old file | None, new file | None): one pair of files, or two folders paired by relative
    path (a file on one side only is compared with nothing: all added or all removed)."""
    from summ_assets.core.documents import EXTENSIONS, DocumentError

    po, pn = Path(old), Path(new)
    if po.is_dir() != pn.is_dir() and po.exists() and pn.exists():
        raise DocumentError(f"{old} and {new}: give two files or two folders, not one of each")
    if not po.is_dir():
        return [(f"{old} → {new}", po, pn)]

    def listing(root: Path) -> dict[str, Path]:
        return {
            p.relative_to(root).as_posix(): p
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
        }

    a, b = listing(po), listing(pn)
    if not a and not b:
        raise DocumentError(
            f"{old} and {new}: no Markdown or text files ({', '.join(EXTENSIONS)}) in either folder"
        )
    return [(name, a.get(name), b.get(name)) for name in sorted(set(a) | set(b))]


def compare_paths(
    old: str,
    new: str,
    fmt: str = "md",
    output: str | None = None,
    model: str | None = None,
    no_summaries: bool = False,
    fail_on: tuple[str, ...] = (),
    quantize: str | None = None,
    cache_dir: str | None = None,
) -> int:
    """Compare two versions (files or folders): aligned sections, what changed, and the student's
    summary of both versions of every changed section. Exit 1 when a section matches `fail_on`."""
    _env()
    from summ_assets.core.chunking import FrontMatterError
    from summ_assets.core.documents import DocumentError
    from summ_assets.core.profiles import get_profile
    from summ_assets.serving import ServingError, Summarizer, read_input_file, resolve_model_path
    from summ_assets.serving.compare import (
        compare_documents,
        counts_line,
        plan_comparison,
        render_html,
        render_json,
        render_markdown,
    )

    profile = get_profile()
    docs: list[tuple[str, str, str, str, str]] = []  # label, old name, old text, new name, new text
    try:
        for label, po, pn in _compare_pairs(old, new):
            ot = read_input_file(po, profile.data.max_file_bytes) if po else ""
            nt = read_input_file(pn, profile.data.max_file_bytes) if pn else ""
            docs.append((label, str(po) if po else "", ot, str(pn) if pn else "", nt))
        # the alignment alone first: broken front matter fails before a model loads, and a model
        # loads only when some section changed
        needs_model = any(
            p.status != "unchanged"
            for _, on, ot, nn, nt in docs
            for p in plan_comparison(ot, nt, old_source=on or "old", new_source=nn or "new").alignment.pairs
        )
    except (DocumentError, FrontMatterError) as exc:
        return _fail("compare", str(exc))
    summ = None
    if needs_model and not no_summaries:
        try:
            summ = Summarizer(resolve_model_path(model), profile=profile, quantize=quantize)
        except ServingError as exc:
            if model is not None:
                return _fail("compare", str(exc))
            print(f"summ-assets compare: no summaries ({exc}); comparing the sections alone", file=sys.stderr)
    results = []
    try:
        for label, on, ot, nn, nt in docs:
            r = compare_documents(ot, nt, summ, cache_dir, old_source=on or "old", new_source=nn or "new")
            results.append((label, on, ot, nn, nt, r))
    except FrontMatterError as exc:
        return _fail("compare", str(exc))
    finally:
        if summ is not None:
            summ.close()

    single = len(results) == 1 and not Path(old).is_dir()
    if fmt == "json":
        files = [{"old_file": on or None, "new_file": nn or None, **r} for _, on, _, nn, _, r in results]
        if single:
            text_out = render_json(files[0])
        else:
            total: dict[str, int] = {}
            for f in files:
                for k, v in f["counts"].items():
                    total[k] = total.get(k, 0) + v
            text_out = render_json({"documents": files, "counts": total})
    elif fmt == "html":
        text_out = render_html(
            [
                {"title": label, "result": r, "old_text": ot, "new_text": nt}
                for label, _, ot, _, nt, r in results
            ],
            title=f"compare {old} → {new}",
        )
    else:
        text_out = "\n".join(render_markdown(r, label) for label, *_, r in results)
    if output:
        Path(output).write_text(text_out, encoding="utf-8")
    else:
        sys.stdout.write(text_out)
        sys.stdout.flush()
    generated = sum(r["summaries"]["generated"] for *_, r in results)
    cached = sum(r["summaries"]["cached"] for *_, r in results)
    if not single:
        for label, *_, r in results:
            print(f"{label}: {counts_line(r)}", file=sys.stderr)
    print(
        f"{len(results)} document{'s' if len(results) != 1 else ''} compared; summaries: "
        + (f"{generated} generated, {cached} from the cache (model {summ.path})" if summ else "none"),
        file=sys.stderr,
    )
    flags = {"moved": "moved", "renamed": "heading_changed"}
    hits = sum(
        1
        for *_, r in results
        for row in r["sections"]
        if row["status"] in fail_on or any(row[flags[f]] for f in fail_on if f in flags)
    )
    if hits:
        print(f"summ-assets compare: {hits} section(s) {'/'.join(fail_on)} (--fail-on)", file=sys.stderr)
        return 1
    return 0


def corpus_index_path() -> Path:
    """The newest `section_index` artifact recorded in the Dagster instance ($DAGSTER_HOME)."""
    import dagster as dg

    from summ_assets.serving import ServingError

    local = Path.cwd() / ".dagster_home"
    home = os.environ.get("DAGSTER_HOME") or (str(local) if (local / "dagster.yaml").is_file() else None)
    if not home:
        raise ServingError(
            "no Dagster instance: set DAGSTER_HOME (`make demo` uses ./.dagster_home, found from the "
            "repository root), or pass --against FOLDER"
        )
    instance = dg.DagsterInstance.from_config(home)
    path = latest_artifact(instance, "section_index")
    if path is None or not path.is_file():
        raise ServingError(
            "no corpus index yet: the `section_index` asset has not been materialized in "
            f"{instance.root_directory}; run `make demo` (or `summ-assets refresh`), or pass --against FOLDER"
        )
    return path


def render_against(result: dict, title: str) -> str:
    """Markdown: one row per section of the new page, its status and closest existing sections."""
    c = result["counts"]
    lines = [
        f"## {title}",
        "",
        f"{c['duplicate']} duplicate, {c['overlapping']} overlapping, {c['new']} new section(s); index: "
        f"{result['index']['sections']} sections of {result['index']['documents']} documents "
        f"(duplicate >= {result['thresholds']['duplicate']}, overlapping >= {result['thresholds']['overlapping']})",
        "",
        "| section | status | closest existing sections (score) |",
        "|---|---|---|",
    ]
    for s in result["sections"]:
        near = "<br>".join(
            f"{m['doc_id']}: {m['heading_path'] or '(before the first heading)'} ({m['score']:.2f})"
            for m in s["matches"]
        )
        heading = s["new"]["heading_path"] or "(before the first heading)"
        lines.append(f"| {heading.replace('|', '/')} | {s['status']} | {near.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def compare_against(new: str, against: str, fmt: str = "md", output: str | None = None, k: int = 3) -> int:
    """For each section of NEW, the closest sections of a folder of documents or of the pipeline's own
    corpus (`section_index`), each with a score and a status: duplicate, overlapping or new."""
    _env()
    from summ_assets.core.chunking import FrontMatterError
    from summ_assets.core.documents import DocumentError
    from summ_assets.core.profiles import get_profile
    from summ_assets.core.section_index import IndexError_, SectionIndex
    from summ_assets.core.section_index import against as against_index
    from summ_assets.serving import ServingError, read_input_file
    from summ_assets.serving.compare import render_json

    profile = get_profile()
    try:
        text = read_input_file(new, profile.data.max_file_bytes)
        if against == "corpus":
            index = SectionIndex.read(corpus_index_path())
        else:
            index = SectionIndex.from_folder(
                against, lambda p: read_input_file(p, profile.data.max_file_bytes)
            )
        result = against_index(text, index, k=k, source=new)
    except (DocumentError, FrontMatterError, IndexError_, ServingError) as exc:
        return _fail("compare --against", str(exc))
    out = (
        render_json({"new_file": new, "against": against, **result})
        if fmt == "json"
        else render_against(result, f"{new} against {against}")
    )
    if output:
        Path(output).write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
        sys.stdout.flush()
    return 0


def config_show(profile: str | None = None) -> int:
    """Print the effective profile as YAML: every field, its meaning and where its value came from."""
    from summ_assets.core.profiles import ProfileError, effective_profile, to_yaml

    try:
        prof, origins = effective_profile(profile)
    except ProfileError as exc:
        return _fail("config show", str(exc))
    header = (
        f"effective profile {prof.name!r}; [origin] = the file a value was set in, 'default' or the "
        "environment variable that overrode it"
    )
    sys.stdout.write(to_yaml(prof, origins, header=header))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="summ-assets", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refresh", help="materialize only stale/missing assets (what the UI calls unsynced)")
    r.add_argument("--dry-run", action="store_true", help="only say what would run and why")
    r.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="ASSET",
        help="materialize ASSET even if up to date (repeatable)",
    )
    r.add_argument(
        "--wait-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up waiting for a pool slot or another refresh after SECONDS (default: wait, saying why)",
    )
    sub.add_parser("demo", help="refresh, then print the evaluation report")
    sub.add_parser(
        "eval-full",
        help="refresh, then score every model on every example (evaluation_report_full) and print it",
    )
    rp = sub.add_parser("report", help="print the latest evaluation report")
    rp.add_argument("--full", action="store_true", help="the full evaluation (make eval-full)")
    sm = sub.add_parser("summarize", help="summarize Markdown/text files section by section")
    sm.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 Markdown or text files")
    sm.add_argument("--model", help="model folder (default: the promoted student)")
    sm.add_argument("--format", choices=("md", "json", "jsonl"), default="md", help="output format (md)")
    sm.add_argument("--output", help="write here instead of stdout")
    sm.add_argument("--quantize", choices=("int8", "8bit", "4bit"), help="int8: CPU dynamic; 8bit/4bit: CUDA")
    sv = sub.add_parser("serve", help="HTTP API: POST /summarize, POST /compare, GET /health, GET /model")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--model", help="model folder (default: the promoted student)")
    sv.add_argument("--max-bytes", type=int, default=None, help="largest request body (default 1,000,000)")
    sv.add_argument(
        "--timeout", type=float, default=None, help="seconds per request before 504 (default 120)"
    )
    sv.add_argument("--quantize", choices=("int8", "8bit", "4bit"), help="int8: CPU dynamic; 8bit/4bit: CUDA")
    sv.add_argument(
        "--max-queue-sections",
        type=int,
        default=None,
        help="sections queued at once before new requests get 503 + Retry-After (default 256); requests are "
        "also refused when the queued work would take more than half of --timeout",
    )
    cp = sub.add_parser(
        "compare", help="what changed between two versions of a document (or two folders, paired by name)"
    )
    cp.add_argument("old", metavar="OLD", help="the old version: a file, or a folder (with --against: NEW)")
    cp.add_argument(
        "new", metavar="NEW", nargs="?", help="the new version: a file, or a folder (files paired by name)"
    )
    cp.add_argument(
        "--against",
        metavar="PATH|corpus",
        help="compare one new document with existing ones: a folder of Markdown files, or 'corpus' (the "
        "pipeline's training pool, the section_index asset); md or json",
    )
    cp.add_argument("--top", type=int, default=3, help="with --against: closest sections per section (3)")
    cp.add_argument("--format", choices=("md", "json", "html"), default="md", help="output format (md)")
    cp.add_argument("--output", help="write here instead of stdout")
    cp.add_argument("--model", help="model folder for the summaries (default: the promoted student)")
    cp.add_argument("--no-summaries", action="store_true", help="the alignment alone: load no model")
    cp.add_argument(
        "--fail-on",
        type=_fail_on,
        default=(),
        metavar="STATUSES",
        help="exit 1 when a section has one of these (comma-separated: added,removed,edited,moved,renamed)",
    )
    cp.add_argument("--quantize", choices=("int8", "8bit", "4bit"), help="int8: CPU dynamic; 8bit/4bit: CUDA")
    cp.add_argument("--cache-dir", help="summary cache folder (default: <artifacts>/summary_cache)")
    cf = sub.add_parser("config", help="inspect the profile in force")
    cf_sub = cf.add_subparsers(dest="config_cmd", required=True)
    cs = cf_sub.add_parser("show", help="print the effective profile and where each value came from")
    cs.add_argument("--profile", help="a shipped name or a YAML file (default: $SUMM_PROFILE, else demo)")
    args = ap.parse_args(argv)
    if args.cmd == "config":
        return config_show(args.profile)
    if args.cmd == "refresh":
        return refresh(args.dry_run, tuple(args.force), args.wait_timeout)
    if args.cmd == "demo":
        rc = refresh()
        if rc == 0:
            print_report()
        return rc
    if args.cmd == "eval-full":
        rc = refresh(extra=("evaluation_report_full",))
        if rc == 0:
            print_report("evaluation_report_full")
        return rc
    if args.cmd == "report":
        _env()
        return print_report("evaluation_report_full" if args.full else "evaluation_report")
    if args.cmd == "summarize":
        return summarize_files(args.files, args.model, args.format, args.output, args.quantize)
    if args.cmd == "compare" and args.against:
        if args.new is not None or args.format == "html":
            cp.error("--against takes one document (NEW) and --format md or json")
        return compare_against(args.old, args.against, args.format, args.output, args.top)
    if args.cmd == "compare":
        if args.new is None:
            cp.error("give OLD and NEW, or NEW --against PATH|corpus")
        return compare_paths(
            args.old,
            args.new,
            args.format,
            args.output,
            args.model,
            args.no_summaries,
            args.fail_on,
            args.quantize,
            args.cache_dir,
        )
    if args.cmd == "serve":
        return serve_http(
            args.host,
            args.port,
            args.model,
            args.max_bytes,
            args.timeout,
            args.quantize,
            args.max_queue_sections,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
