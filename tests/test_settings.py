from pipelines.settings import RunPaths, data_root


def test_run_folders_live_under_the_run_id(tmp_path):
    run = RunPaths.for_run("2026-11-22", base=tmp_path).ensure()
    assert run.root == tmp_path / "2026-11-22"
    for d in (run.raw_dir, run.staged_dir, run.golden_dir, run.report_dir):
        assert d.is_dir() and d.parent == run.root


def test_ucv_home_moves_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    assert data_root() == tmp_path.resolve()
