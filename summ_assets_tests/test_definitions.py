from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from summ_assets_tests.conftest import REPO


def test_definitions_load_and_validate() -> None:
    from summ_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "teacher_base",
        "student_base",
        "student_trimmed_base",
        "raw_documents",
        "document_sections",
        "corpus_manifest",
        "summary_dataset",
        "teacher_adapter",
        "teacher_logits",
        "teacher_pseudo_summaries",
        "student_model",
        "student_baseline",
        "teacher_generations",
        "student_generations",
        "baseline_generations",
        "student_base_generations",
        "evaluation_report",
        "evaluation_report_full",
        "promoted_student",
        "section_index",
        "document_changes",
    }
    by_key = {a.key.to_user_string(): a for a in defs.assets}
    for key in (
        "teacher_adapter",
        "teacher_logits",
        "teacher_pseudo_summaries",
        "student_model",
        "student_baseline",
        "teacher_generations",
        "student_generations",
        "evaluation_report",
        "evaluation_report_full",
    ):
        assert by_key[key].op.pool == "gpu"
    # the full evaluation runs only when asked for: no automation condition, not in the model half
    from summ_assets.definitions import ON_DEMAND, UNPARTITIONED

    assert ON_DEMAND == ("evaluation_report_full",) and "evaluation_report_full" not in UNPARTITIONED
    assert next(iter(by_key["evaluation_report_full"].specs)).automation_condition is None
    graph = defs.resolve_asset_graph()
    for node in graph.asset_nodes:
        assert node.code_version, f"{node.key} has no code_version"


def test_dagster_cli_validates_the_code_location(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    out = subprocess.run(
        [str(exe), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All code locations passed validation" in out.stdout + out.stderr


def test_importing_definitions_does_not_import_torch() -> None:
    code = "import sys, summ_assets.definitions; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False False", out.stderr


def test_code_versions_follow_only_the_settings_an_asset_reads(monkeypatch) -> None:
    from dataclasses import replace

    from summ_assets.core import profiles
    from summ_assets.defs.common import spec_version
    from summ_assets.stages.specs import STUDENT_BASE, STUDENT_BASELINE, STUDENT_MODEL

    # both sides from explicit profiles: the result must not depend on $SUMM_PROFILE (was a bug)
    specs = (STUDENT_BASE, STUDENT_MODEL, STUDENT_BASELINE)
    monkeypatch.setattr(profiles, "get_profile", lambda name=None: profiles.DEMO)
    before = [spec_version(s) for s in specs]
    tuned = replace(profiles.DEMO, student=replace(profiles.DEMO.student, alpha=0.9))
    monkeypatch.setattr(profiles, "get_profile", lambda name=None: tuned)
    after = [spec_version(s) for s in specs]
    assert after[0] == before[0]  # alpha does not touch the student's base model
    assert after[1] != before[1]  # ...marks the distilled student stale
    assert after[2] == before[2]  # ...but not the CE baseline, which has no KD term


def test_every_asset_has_owners_group_kinds_and_description() -> None:
    from summ_assets.definitions import defs
    from summ_assets.defs.common import OWNERS

    nodes = list(defs.resolve_asset_graph().asset_nodes)
    assert len(nodes) == 21
    for node in nodes:
        name = node.key.to_user_string()
        assert list(node.owners) == list(OWNERS), f"{name}: owners {node.owners}"
        assert node.group_name in {"models", "ingest", "teacher", "student", "evaluation"}, name
        assert node.kinds and len(node.kinds) <= 3, f"{name}: kinds {node.kinds}"
        assert node.description and len(node.description) > 20, f"{name}: no description"
    # the owners survive next to the automation condition the model half gets in the same place
    by_key = {n.key.to_user_string(): n for n in nodes}
    assert by_key["student_model"].automation_condition is not None
    assert by_key["raw_documents"].automation_condition is None
