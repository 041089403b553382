"""How a driver's key reaches a provider actor, without Ray: sealing, fingerprints, actor
names, where the key is looked for, and the error that says so (runtime/keys.py)."""

from __future__ import annotations

import pickle

import pytest

from actors.factory import provider_actor_name, provider_actor_names, router_name
from actors.provider_actor import ProviderActor, actor_settings
from actors.runtime import public_settings
from llm.config import Settings, load_settings
from llm.exceptions import ConfigurationError
from runtime.keys import (
    SealedKey,
    account_keys,
    actor_key,
    fingerprint,
    missing_key_message,
    resolve_driver_key,
)
from runtime.limits_config import AccountSpec, load_limits

KEY_A = "sk-ant-KEY-A-0123456789abcdefghijklmnop"
KEY_B = "sk-ant-KEY-B-0123456789abcdefghijklmnop"
SALT = b"0123456789abcdef"
TEAM = AccountSpec(provider="anthropic", name="team-a", api_key_env="ANTHROPIC_KEY_TEAM_A")
DEFAULT = AccountSpec(provider="anthropic")
#: No environment, no .env, no Ray job: only what Settings hold.
_NOWHERE: dict = {"environ": {}, "dotenv": {}, "job_env": {}}


def settings(**keys: str) -> Settings:
    return load_settings(environ={k.upper(): v for k, v in keys.items()}, dotenv_path=None)


# ---------------------------------------------------------------------- sealing


def test_a_sealed_key_shows_its_text_in_no_repr_str_or_pickle() -> None:
    import ray.cloudpickle

    sealed = SealedKey(KEY_A)
    assert sealed.reveal() == KEY_A
    assert KEY_A not in repr(sealed) and KEY_A not in str(sealed) and "*" in repr(sealed)
    for dumps in (pickle.dumps, ray.cloudpickle.dumps):  # Ray pickles actor arguments
        data = dumps(sealed)
        assert KEY_A.encode() not in data and b"KEY-A" not in data
        assert pickle.loads(data).reveal() == KEY_A
    assert SealedKey(KEY_A)._pad != sealed._pad  # a fresh pad each time


# ---------------------------------------------------------------------- fingerprints, names


def test_fingerprints_tell_keys_apart_and_give_nothing_away() -> None:
    first = fingerprint(KEY_A, SALT)
    assert first == fingerprint(KEY_A, SALT)  # two drivers with one key: one actor
    assert first != fingerprint(KEY_B, SALT)  # different keys: never the same actor
    assert first != fingerprint(KEY_A, b"another cluster!")  # salted per cluster
    assert len(first) == 12 and int(first, 16) >= 0
    assert first not in KEY_A and KEY_A[-6:] not in first


def test_actor_and_router_names_carry_the_fingerprint_not_the_key() -> None:
    limits = {"anthropic": [DEFAULT, TEAM]}
    keys_a = account_keys(settings(anthropic_api_key=KEY_A), limits, salt=SALT, **_NOWHERE)
    names = provider_actor_names(limits, keys_a)["anthropic"]
    assert names[0] == f"llm-provider-anthropic-default-{fingerprint(KEY_A, SALT)}"
    assert names[1] == "llm-provider-anthropic-team-a"  # no key for team-a: the cluster's
    assert provider_actor_name("openai", "default") == "llm-provider-openai-default"
    keys_b = account_keys(settings(anthropic_api_key=KEY_B), limits, salt=SALT, **_NOWHERE)
    names_b = provider_actor_names(limits, keys_b)
    assert names_b["anthropic"][0] != names[0] and names_b["anthropic"][1] == names[1]
    same = provider_actor_names(limits, keys_a)
    assert router_name(same) == router_name({"anthropic": names})
    assert router_name(names_b) != router_name(same) and router_name(same).startswith("llm-router-")
    assert not any(KEY_A in n or KEY_B in n for n in [*names, *names_b["anthropic"]])
    assert KEY_A not in repr(keys_a)


# ---------------------------------------------------------------------- where the driver looks


def test_the_driver_finds_the_key_in_settings_env_dotenv_or_its_job_runtime_env() -> None:
    assert resolve_driver_key(DEFAULT, settings(anthropic_api_key=KEY_A), **_NOWHERE) == KEY_A
    assert resolve_driver_key(DEFAULT, settings(), **_NOWHERE) is None
    job = {"ANTHROPIC_API_KEY": KEY_B}
    assert resolve_driver_key(DEFAULT, settings(), environ={}, dotenv={}, job_env=job) == KEY_B
    # an account's own variable: the environment, then .env, then the job's runtime_env
    var = {"ANTHROPIC_KEY_TEAM_A": KEY_A}
    assert resolve_driver_key(TEAM, settings(), environ=var, dotenv={}, job_env={}) == KEY_A
    assert resolve_driver_key(TEAM, settings(), environ={}, dotenv=var, job_env={}) == KEY_A
    assert resolve_driver_key(TEAM, settings(), environ={}, dotenv={}, job_env=var) == KEY_A
    assert resolve_driver_key(TEAM, settings(anthropic_api_key=KEY_B), **_NOWHERE) is None


def test_gemini_key_variable_is_read_too() -> None:
    google = AccountSpec(provider="google")
    job = {"GEMINI_API_KEY": KEY_A}
    assert resolve_driver_key(google, settings(), environ={}, dotenv={}, job_env=job) == KEY_A
    assert settings(gemini_api_key=KEY_B).api_key("google") == KEY_B


def test_no_key_anywhere_asks_no_salt() -> None:
    """Without Ray, asking for the cluster's salt would fail: it is not asked for then."""
    keys = account_keys(settings(), load_limits(settings(), environ={}), **_NOWHERE)
    assert {k.fingerprint for k in keys.values()} == {None}
    assert {k.sealed for k in keys.values()} == {None}


# ---------------------------------------------------------------------- in the actor


def test_the_drivers_sealed_key_wins_over_the_cluster_environment() -> None:
    env = {"ANTHROPIC_API_KEY": KEY_B}
    built = actor_settings("anthropic", {}, None, env, key=SealedKey(KEY_A))
    assert built.api_key("anthropic") == KEY_A
    assert actor_key(None, ["ANTHROPIC_API_KEY"], env) == (
        KEY_B,
        "the cluster's environment (ANTHROPIC_API_KEY)",
    )
    team = actor_settings("anthropic", {}, "ANTHROPIC_KEY_TEAM_A", {"ANTHROPIC_KEY_TEAM_A": KEY_B})
    assert team.api_key("anthropic") == KEY_B
    ignored = {"anthropic_api_key": "sent-by-mistake"}  # a key field in the settings is dropped
    assert actor_settings("anthropic", ignored, None, env).api_key("anthropic") == KEY_B


def test_no_key_anywhere_says_where_it_was_looked_for() -> None:
    with pytest.raises(ConfigurationError) as info:
        actor_settings("anthropic", {}, None, {}, account="default", node="abc123")
    text = str(info.value)
    for place in ("ANTHROPIC_API_KEY", ".env", "runtime_env", "abc123", "ray start", "README"):
        assert place in text, place
    again = pickle.loads(pickle.dumps(info.value))  # crosses the actor boundary intact
    assert type(again) is ConfigurationError and str(again) == text
    assert again.provider == "anthropic"
    team = missing_key_message("anthropic", "team-a", "ANTHROPIC_KEY_TEAM_A")
    assert "ANTHROPIC_KEY_TEAM_A" in team and "api_key_env" in team and "'team-a'" in team
    google = missing_key_message("google", "default", None)
    assert "GOOGLE_API_KEY / GEMINI_API_KEY" in google


def test_a_provider_actor_with_no_key_fails_each_call_with_that_error() -> None:
    actor = ProviderActor("anthropic", "nokey", {}, "ANTHROPIC_KEY_NOWHERE_16C", ledger_name=None)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_KEY_NOWHERE_16C"):
        actor._get_engine()


def test_settings_sent_to_actors_hold_no_key() -> None:
    fields = public_settings(settings(anthropic_api_key=KEY_A, openai_api_key=KEY_B))
    assert not any(name.endswith("_api_key") for name in fields)
    assert KEY_A not in repr(fields) and KEY_B not in repr(fields)


def test_a_key_variable_may_name_a_file_holding_the_key(tmp_path) -> None:
    secret = tmp_path / "anthropic.key"
    secret.write_text(KEY_A + "\n")
    env = {"ANTHROPIC_API_KEY_FILE": str(secret)}
    assert load_settings(environ=env, dotenv_path=None).api_key("anthropic") == KEY_A
    both = {**env, "ANTHROPIC_API_KEY": KEY_B}  # the variable itself wins
    assert load_settings(environ=both, dotenv_path=None).api_key("anthropic") == KEY_B
    team = {"ANTHROPIC_KEY_TEAM_A_FILE": str(secret)}
    assert resolve_driver_key(TEAM, settings(), environ=team, dotenv={}, job_env={}) == KEY_A
    assert actor_key(None, ["ANTHROPIC_API_KEY"], env)[0] == KEY_A  # the cluster's, too
    missing = {"ANTHROPIC_API_KEY_FILE": str(tmp_path / "nope")}
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY_FILE names .*nope"):
        load_settings(environ=missing, dotenv_path=None)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigurationError, match="empty"):
        load_settings(environ={"OPENAI_API_KEY_FILE": str(tmp_path / "empty")}, dotenv_path=None)
    assert "ANTHROPIC_API_KEY_FILE" in missing_key_message("anthropic", "default", None)
