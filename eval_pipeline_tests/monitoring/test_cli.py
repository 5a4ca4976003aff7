import pytest

from eval_pipeline.cli import main


def test_demo_rejects_drift_after_last_day(capsys):
    assert main(["monitoring-demo", "--days", "3", "--drift-day", "5"]) == 2
    assert "--drift-day 5 must lie in 1..3" in capsys.readouterr().err


def test_demo_rejects_empty_week(capsys):
    assert main(["monitoring-demo", "--days", "0"]) == 2
    assert "--days and --requests-per-day must be at least 1" in capsys.readouterr().err


def test_dashboard_help_names_loopback(capsys):
    with pytest.raises(SystemExit):
        main(["dashboard", "--help"])
    assert "127.0.0.1" in capsys.readouterr().out
