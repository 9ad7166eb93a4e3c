"""Settings read from the environment refuse values they cannot understand, naming the variable,
instead of falling back to a default nobody asked for (DEBUG=ture must not mean DEBUG off)."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from config.settings import env_bool, env_int


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", " On "])
def test_env_bool_reads_the_words_for_on(monkeypatch, value):
    monkeypatch.setenv("SOME_SWITCH", value)
    assert env_bool("SOME_SWITCH", default=False) is True


@pytest.mark.parametrize("value", ["0", "false", "False", "NO", "off", " off "])
def test_env_bool_reads_the_words_for_off(monkeypatch, value):
    monkeypatch.setenv("SOME_SWITCH", value)
    assert env_bool("SOME_SWITCH", default=True) is False


@pytest.mark.parametrize("value", [None, "", "   "])
@pytest.mark.parametrize("default", [True, False])
def test_env_bool_unset_or_empty_is_the_default(monkeypatch, value, default):
    if value is None:
        monkeypatch.delenv("SOME_SWITCH", raising=False)
    else:
        monkeypatch.setenv("SOME_SWITCH", value)
    assert env_bool("SOME_SWITCH", default=default) is default


@pytest.mark.parametrize("value", ["ture", "2", "y", "enabled", "true!", "-1"])
def test_env_bool_refuses_anything_else(monkeypatch, value):
    monkeypatch.setenv("SOME_SWITCH", value)
    with pytest.raises(ImproperlyConfigured) as refused:
        env_bool("SOME_SWITCH")
    message = str(refused.value)
    assert "SOME_SWITCH" in message
    assert repr(value) in message
    for accepted in ("1/0", "true/false", "yes/no", "on/off"):
        assert accepted in message


def test_env_int_reads_a_whole_number_and_defaults_when_empty(monkeypatch):
    monkeypatch.setenv("SOME_COUNT", " 12 ")
    assert env_int("SOME_COUNT", 3) == 12
    monkeypatch.setenv("SOME_COUNT", "")
    assert env_int("SOME_COUNT", 3) == 3
    monkeypatch.delenv("SOME_COUNT")
    assert env_int("SOME_COUNT", 3) == 3


@pytest.mark.parametrize("value", ["ten", "1.5", "30s"])
def test_env_int_refuses_anything_else(monkeypatch, value):
    monkeypatch.setenv("SOME_COUNT", value)
    with pytest.raises(ImproperlyConfigured, match=f"SOME_COUNT={value!r} is not a whole number"):
        env_int("SOME_COUNT", 3)


def test_the_product_does_not_start_with_a_misspelt_debug():
    env = {**os.environ, "DEBUG": "ture"}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG='ture' is not an on/off value" in result.stderr
