"""Settings: every value has a declared range, unknown keys are refused with the nearest
name, and every bad value is one Chinese message naming key, value and expected form,
the same from `bot.py --check` as from a start (never a traceback)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import bot
from pond import ConfigError, Settings
from pond.config import BotSettings, OutboxSettings, check_keys

ENGLISH_WORD = re.compile(r"\b(expected|got|config|error|a number|whole|or more)\b", re.I)


def refused(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping(env)
    return info.value


def assert_friendly(error: ConfigError, key: str, value: str) -> None:
    message = str(error)
    assert key in message and f"「{value}」" in message and "应为" in message, message
    assert not ENGLISH_WORD.search(message), message


@pytest.fixture
def process_state(tmp_path: Path) -> Iterator[Path]:
    """bot.main sets the umask and the root logger: put both back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    mask = os.umask(0o077)
    os.umask(mask)
    yield tmp_path
    os.umask(mask)
    root.handlers[:], root.level = saved


def run_bot(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: Path,
    env: dict[str, str],
    *flags: str,
) -> tuple[int, str]:
    for key in list(os.environ):
        if key.startswith(("BOT_", "OUTBOX_", "INBOUND_", "WECHATY_", "JOB_", "BACKUP_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = bot.main([*flags, "--data-dir", str(data), "--env-file", str(data / "none.env")])
    lines = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]
    return code, "\n".join(lines)


# -- measured: values that switched the governor off or crashed it -------------------------------
@pytest.mark.parametrize("value", ["-5", "nan", "inf", "0", "1e999"])
def test_rate_per_min_must_be_a_positive_finite_number(value: str) -> None:
    error = refused({"OUTBOX_RATE_PER_MIN": value})
    assert_friendly(error, "OUTBOX_RATE_PER_MIN", value)
    assert "大于 0" in str(error)


def test_typing_speed_zero_is_refused_not_a_division_by_zero() -> None:
    assert_friendly(refused({"OUTBOX_TYPING_CHARS_PER_S": "0"}), "OUTBOX_TYPING_CHARS_PER_S", "0")


def test_a_negative_cap_is_refused_and_zero_means_none_today() -> None:
    assert_friendly(refused({"OUTBOX_CAP_SEND": "-1"}), "OUTBOX_CAP_SEND", "-1")
    assert Settings.from_mapping({"OUTBOX_CAP_KICK": "0"}).outbox.cap_kick == 0


def test_a_negative_startup_cutoff_is_refused() -> None:
    error = refused({"INBOUND_STARTUP_CUTOFF_S": "-1"})
    assert_friendly(error, "INBOUND_STARTUP_CUTOFF_S", "-1")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("OUTBOX_BURST", "0"),
        ("OUTBOX_SWITCH_GAP_S", "nan-8"),
        ("OUTBOX_BULK_PAUSE_S", "3-inf"),
        ("OUTBOX_CHAT_GAP_S", "-0.5"),
        ("BOT_PERSONA_RELOAD_S", "0"),
        ("BOT_TAKEOVER_PAUSE_MIN", "nan"),
        ("BOT_TIMEZONE", "Mars/Olympus"),
        ("OUTBOX_QUIET_HOURS", "25:00-08:00"),
        ("BACKUP_KEEP", "0"),
        ("INBOUND_STARTUP_CUTOFF_S", "0"),
        ("INBOUND_SEEN_TTL_DAYS", "0"),
        ("OUTBOX_BREAKER_COOLDOWN_MIN", "0"),
        ("BACKUP_EVERY_H", "0"),
    ],
)
def test_every_setting_has_a_range(key: str, value: str) -> None:
    assert_friendly(refused({key: value}), key, value)


def test_choices_are_case_insensitive_and_stored_as_spelled() -> None:
    settings = Settings.from_mapping({"BOT_TRANSPORT": "WeChaty", "BOT_LOG_LEVEL": "warning"})
    assert (settings.bot.transport, settings.bot.log_level) == ("wechaty", "WARNING")


def test_ranges_are_declared_with_the_fields() -> None:
    """Each numeric field of the core sections carries its bounds (or the default 0+)."""
    import dataclasses

    rate = next(f for f in dataclasses.fields(OutboxSettings) if f.name == "rate_per_min")
    assert rate.metadata["gt"] == 0
    chars = next(f for f in dataclasses.fields(BotSettings) if f.name == "persona_max_chars")
    assert chars.metadata["ge"] == 2


# -- measured: tracebacks instead of the config message ------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BOT_LOG_LEVEL", "LOUD"),
        ("BOT_PERSONA_MAX_CHARS", "0"),
        ("DATABASE_URL", "mysql://pond:secret@db/pond"),
        ("BOT_TRANSPORT", "qywx"),
        ("HEALTH_MAILBOX_POLL_S", "0"),
        ("BOT_PLUGINS", "greeter,nosuch"),
    ],
)
def test_bad_values_are_one_message_from_check_and_from_start(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    process_state: Path,
    key: str,
    value: str,
) -> None:
    checked = run_bot(monkeypatch, capsys, process_state / "d", {key: value}, "--check")
    started = run_bot(monkeypatch, capsys, process_state / "d", {key: value})
    assert checked == started  # --check and start agree, word for word
    code, err = checked
    assert code == 2 and err.startswith("配置错误：配置项 " + key), err
    assert "Traceback" not in err and f"「{value}」" in err


def test_an_unwritable_data_dir_is_the_config_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], process_state: Path
) -> None:
    blocker = process_state / "a-file"
    blocker.write_text("not a directory")
    code, err = run_bot(monkeypatch, capsys, blocker / "data", {})
    assert code == 2 and "配置错误：配置项 BOT_DATA_DIR" in err and "可以创建并写入的目录" in err
    assert "Traceback" not in err


def test_an_unwritable_log_file_is_the_config_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], process_state: Path
) -> None:
    blocker = process_state / "a-file"
    blocker.write_text("not a directory")
    env = {"BOT_LOG_FILE": str(blocker / "logs" / "pond.log")}
    code, err = run_bot(monkeypatch, capsys, process_state / "d", env, "--check")
    assert code == 2 and "配置错误：配置项 BOT_LOG_FILE" in err and "Traceback" not in err


def test_a_wechaty_start_without_an_endpoint_is_refused_by_check_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], process_state: Path
) -> None:
    env = {"BOT_TRANSPORT": "wechaty", "WECHATY_PUPPET_SERVICE_TOKEN": "t0k3n"}
    checked = run_bot(monkeypatch, capsys, process_state / "d", env, "--check")
    started = run_bot(monkeypatch, capsys, process_state / "d", env)
    assert checked == started
    assert checked[0] == 2 and "WECHATY_PUPPET_SERVICE_ENDPOINT" in checked[1]


def test_a_missing_database_driver_is_the_config_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], process_state: Path
) -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg  # noqa: F401

        pytest.skip("psycopg is installed here")
    except ImportError:
        pass
    env = {"DATABASE_URL": "postgresql://pond@localhost/pond"}
    code, err = run_bot(monkeypatch, capsys, process_state / "d", env, "--check")
    assert code == 2 and "DATABASE_URL" in err and "psycopg" in err and "Traceback" not in err


# -- measured: keys nobody reads -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("OUTBOX_CAP_SNED", "是不是 OUTBOX_CAP_SEND？"),
        ("outbox_cap_send", "配置项名要大写：OUTBOX_CAP_SEND"),
        ("job_admin_morning_report_cron", "配置项名要大写：JOB_ADMIN_MORNING_REPORT_CRON"),
        ("JOB_ADMIN_MORNING_REPROT_CRON", "是不是 JOB_ADMIN_MORNING_REPORT_CRON？"),
        ("GROUPS_MEMBR_LIMIT", "是不是 GROUPS_MEMBER_LIMIT？"),
        ("HEALTH_HEARTBEET_S", "是不是 HEALTH_HEARTBEAT_S？"),
        ("BACKUP_KEPP", "是不是 BACKUP_KEEP？"),
    ],
)
def test_unknown_keys_stop_start_up_with_the_nearest_name(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    process_state: Path,
    key: str,
    hint: str,
) -> None:
    checked = run_bot(monkeypatch, capsys, process_state / "d", {key: "0"}, "--check")
    started = run_bot(monkeypatch, capsys, process_state / "d", {key: "0"})
    assert checked == started
    code, err = checked
    assert code == 2 and f"未知的配置项：{key}（{hint}）" in err, err


def test_keys_of_other_programs_are_left_alone() -> None:
    known = ["OUTBOX_CAP_SEND"]
    check_keys({"PATH": "/bin", "WECHATY_PUPPET": "x", "http_proxy": "y"}, known, ["OUTBOX"])


def test_a_ci_servers_job_variables_are_not_cron_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], process_state: Path
) -> None:
    env = {"JOB_NAME": "pond-deploy", "JOB_URL": "http://ci/job/1"}
    code, err = run_bot(monkeypatch, capsys, process_state / "d", env, "--check")
    assert code == 0, err


def test_a_key_with_nothing_close_points_to_the_example() -> None:
    with pytest.raises(ConfigError, match=r"没有相近的配置项，见 config\.example\.env"):
        check_keys({"OUTBOX_ZZZZZZZZZZZZ": "1"}, ["OUTBOX_CAP_SEND"], ["OUTBOX"])


# -- plugin sections -------------------------------------------------------------------------------
async def test_plugin_sections_have_ranges_too(tmp_path: Path) -> None:
    from harness import ChatSim

    for key, value in [("GROUPS_MEMBER_LIMIT", "-3"), ("CALENDAR_FALLBACK", "carrier pigeon")]:
        with pytest.raises(ConfigError) as info:
            await ChatSim.create(tmp_path / key, plugins=["groups", "calendar"], env={key: value})
        assert_friendly(info.value, key, value)


def test_the_example_file_is_all_known_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], process_state: Path
) -> None:
    from test_boundaries import example_env

    env = {k: v for k, v in example_env().items() if k != "BOT_DATA_DIR"}
    code, err = run_bot(monkeypatch, capsys, process_state / "d", env, "--check")
    assert code == 0, err
