from pipelines.settings import RunPaths, data_root


def test_run_folders_live_under_the_run_id(tmp_path):
    run = RunPaths.for_run("2026-11-22", base=tmp_path).ensure()
    assert run.root == tmp_path / "2026-11-22"
    for d in (run.raw_dir, run.staged_dir, run.golden_dir, run.report_dir):
        assert d.is_dir() and d.parent == run.root


def test_ucv_home_moves_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    assert data_root() == tmp_path.resolve()


def test_merge_config_merges_mappings_replaces_lists_and_null_removes():
    from pipelines.settings import merge_config

    base = {"groups": {"name": {"fields": ["a"], "rules": ["x", "y"]}, "sex": {"rules": ["z"]}},
            "min": 0.9}
    got = merge_config(base, {"groups": {"name": {"rules": ["y"]}, "sex": None}, "min": 0.95})
    assert got == {"groups": {"name": {"fields": ["a"], "rules": ["y"]}}, "min": 0.95}
    assert base["groups"]["name"]["rules"] == ["x", "y"]  # the base is not changed


def test_a_config_folder_changes_survivorship_and_retention_with_only_what_differs(tmp_path):
    """An insurer's folder holds one group's rules, the marketing file's confidence floor and one
    retention figure; everything else stays the project's."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "survivorship.yaml").write_text(
        "groups:\n  sex:\n    rules: [recency]\nmarketing_export:\n  min_confidence: 0.97\n",
        encoding="utf-8")
    (tmp_path / "identify.yaml").write_text("retention:\n  run_folders: 3\n", encoding="utf-8")
    code = ("import json; from pipelines.golden.config import survivorship_config, "
            "survivorship_groups; from pipelines.orchestration.retention import load_retention; "
            "c = survivorship_config(); g = {x.name: x for x in survivorship_groups(c)}; "
            "r = load_retention(); print(json.dumps([g['sex'].rules, g['sex'].fields, "
            "g['name'].rules, c['marketing_export']['min_confidence'], "
            "c['marketing_export']['contact_requires_consent'], r.run_folders, r.landing]))")
    env = {k: v for k, v in os.environ.items() if k != "UCV_RETENTION_NIGHTS"}

    def run(config_dir):
        extra = {"UCV_CONFIG_DIR": str(config_dir)} if config_dir else {}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={**env, **extra}).stdout
        return json.loads(out)

    project, insurer = run(None), run(tmp_path)
    assert insurer[0] == ["recency"] != project[0]
    assert insurer[1] == project[1]  # the group's fields stay the project's
    assert insurer[2] == project[2]  # other groups untouched
    assert insurer[3] == 0.97 and project[3] == 0.90
    assert insurer[4] is project[4] is True
    assert insurer[5:] == [3, project[6]] and project[5] == project[6]
