from __future__ import annotations

import pytest

from pipeline.core.errors import SettingsError
from pipeline.core.settings import Settings, load_settings


def test_environment_prefix_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_KAFKA_PORT", "19092")
    monkeypatch.setenv("NEWSFLOW_ARTICLES_PARTITIONS", "3")
    s = load_settings()
    assert s.kafka_port == 19092
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.articles_partitions == 3


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_KAFKA_PORT", "not-a-port")
    monkeypatch.setenv("NEWSFLOW_BATCH_MAX_SIZE", "0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "NEWSFLOW_KAFKA_PORT" in message
    assert "NEWSFLOW_BATCH_MAX_SIZE" in message
    assert "not-a-port" in message


def test_secret_is_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_PG_PASSWORD", "hunter2-very-secret")
    s = load_settings()
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.masked())
    assert "hunter2" in s.database_url()  # only where it is needed


def test_placeholder_secret_rejected_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("NEWSFLOW_PG_PASSWORD", "newsflow")
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings()
    monkeypatch.setenv("NEWSFLOW_PG_PASSWORD", "a-real-one-7f3c")
    assert load_settings().environment == "production"


def test_bad_secret_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("NEWSFLOW_PG_PASSWORD", "changeme")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "changeme" not in str(info.value)


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("NEWSFLOW_TOPIC_ARTICLES=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().topic_articles == "from-dotenv"


def test_model_cache_is_keyed_by_registered_model_and_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.core.registry import local_copy_path

    a = Settings(home=tmp_path, registered_model_name="newsflow-topic")
    b = a.model_copy(update={"registered_model_name": "newsflow-demo-x"})
    c = a.model_copy(update={"mlflow_tracking_uri": "http://mlflow:5000"})
    paths = {local_copy_path(s, "1") for s in (a, b, c)}
    assert len(paths) == 3 and all(p.name == "v1" and p.is_relative_to(tmp_path) for p in paths)
    assert local_copy_path(a, "1") == local_copy_path(a.model_copy(), "1")


def test_env_example_placeholder_is_refused_in_production(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`.env.example` copied to `.env` as it is, with only the environment switched to
    production: the placeholder password it ships must be refused."""
    from pathlib import Path

    example = (Path(__file__).resolve().parents[4] / ".env.example").read_text()
    (tmp_path / ".env").write_text(
        example.replace("NEWSFLOW_ENVIRONMENT=development", "NEWSFLOW_ENVIRONMENT=production")
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSFLOW_PG_PASSWORD", raising=False)
    monkeypatch.delenv("NEWSFLOW_ENVIRONMENT", raising=False)
    with pytest.raises(SettingsError, match="placeholder") as info:
        load_settings()
    assert "change-me" not in str(info.value)
    monkeypatch.setenv("NEWSFLOW_PG_PASSWORD", "short-1")
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings()


def test_gate_margins_are_settings_and_bad_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (Settings().gate_max_macro_f1_drop, Settings().gate_max_class_f1_drop) == (0.005, 0.05)
    monkeypatch.setenv("NEWSFLOW_GATE_MAX_MACRO_F1_DROP", "0.02")
    assert load_settings().gate_max_macro_f1_drop == 0.02
    for bad in ("nan", "-0.01", "1.5", "inf", "two"):
        monkeypatch.setenv("NEWSFLOW_GATE_MAX_CLASS_F1_DROP", bad)
        with pytest.raises(SettingsError, match="NEWSFLOW_GATE_MAX_CLASS_F1_DROP"):
            load_settings()
