"""Registry: name resolution, suggestions, user files, lifecycle, data faithful to §4."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal

import pytest

from llm import registry as reg
from llm.exceptions import ModelNotFoundError
from llm.registry import (
    Registry,
    all_models,
    get_model_info,
    get_registry,
    lifecycle_warning,
    list_available_models,
    load_registry,
    reset_registry,
    resolve_model,
)

TODAY = dt.date(2026, 11, 24)
D = Decimal

BRIEF_MODELS = {
    "anthropic": {"claude-opus-4.5", "claude-opus-4.1", "claude-sonnet-4.5", "claude-haiku-4.5"},
    "openai": {"gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "o3", "o4-mini"},
    "google": {
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-3-pro-preview",
    },
}
REPLACEMENTS = {"claude-sonnet-4.6", "claude-opus-4.6", "gemini-3.1-pro-preview"}
#: The day the registry was last checked against genai-prices 0.2.3 and LiteLLM 1.110.2.
CHECK_DAY = dt.date(2026, 11, 27)
#: Every current model of the three providers (wire-formats.md §4, genai-prices 0.2.3,
#: LiteLLM 1.110.2): canonical name -> API id.
CURRENT_MODELS = {
    "claude-opus-4.6": "claude-opus-4-6",
    "claude-sonnet-4.6": "claude-sonnet-4-6",
    "claude-opus-4.7": "claude-opus-4-7",
    "claude-opus-4.8": "claude-opus-4-8",
    "claude-opus-5": "claude-opus-5",
    "claude-sonnet-5": "claude-sonnet-5",
    "claude-opus-5.5": "claude-opus-5-5",
    "claude-sonnet-5.5": "claude-sonnet-5-5",
    "claude-haiku-5.5": "claude-haiku-5-5",
    "claude-haiku-4.5": "claude-haiku-4-5",
    "claude-fable-5": "claude-fable-5",
    "claude-fable-5.1": "claude-fable-5-1",
    "claude-fable-5.2": "claude-fable-5-2",
    "claude-mythos-5.2": "claude-mythos-5-2",
    "gpt-5.1": "gpt-5.1",
    "gpt-5.2": "gpt-5.2",
    "gpt-5.4": "gpt-5.4",
    "gpt-5.4-mini": "gpt-5.4-mini",
    "gpt-5.4-nano": "gpt-5.4-nano",
    "gpt-5.5": "gpt-5.5",
    "gpt-5.6-sol": "gpt-5.6-sol",
    "gpt-5.6-terra": "gpt-5.6-terra",
    "gpt-5.6-luna": "gpt-5.6-luna",
    "gpt-6-sol": "gpt-6-sol",
    "gpt-6-luna": "gpt-6-luna",
    "gpt-6-astra": "gpt-6-astra",
    "gpt-6.1-sol": "gpt-6.1-sol",
    "gpt-6.1-terra": "gpt-6.1-terra",
    "gemini-3-flash-preview": "gemini-3-flash-preview",
    "gemini-3.1-flash-lite": "gemini-3.1-flash-lite",
    "gemini-3.1-pro-preview": "gemini-3.1-pro-preview",
    "gemini-3.5-flash": "gemini-3.5-flash",
    "gemini-3.5-flash-lite": "gemini-3.5-flash-lite",
    "gemini-3.6-flash": "gemini-3.6-flash",
    "gemini-3.7-flash": "gemini-3.7-flash",
    "gemini-3.8-flash": "gemini-3.8-flash",
    "gemini-4-argon": "gemini-4-argon",
}


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


# ------------------------------------------------------------------------------ look-ups


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("claude-sonnet-4.5", "claude-sonnet-4.5"),
        ("claude-sonnet-4-5", "claude-sonnet-4.5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("Claude-Sonnet-4.5", "claude-sonnet-4.5"),
        ("  claude-haiku-4-5-20251001 ", "claude-haiku-4.5"),
        ("claude-opus-4-1-20250805", "claude-opus-4.1"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("GPT-4.1-2025-04-14", "gpt-4.1"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("Models/Gemini-3.1-Pro-Preview", "gemini-3.1-pro-preview"),
    ],
)
def test_get_model_info_by_every_name_form(name, canonical):
    info = get_model_info(name)
    assert info is not None and info.name == canonical


def test_unknown_and_differently_priced_ids_are_not_found():
    assert get_model_info("claude-sonnet-9") is None
    # gpt-4o-2024-05-13 had other prices ($5/$15); it must not alias gpt-4o.
    assert get_model_info("gpt-4o-2024-05-13") is None


def test_resolve_model_suggests_close_names():
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("claude-sonet-4.5")
    assert "claude-sonnet-4.5" in caught.value.suggestions
    assert "claude-sonnet-4.5" in str(caught.value)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.suggestions == caught.value.suggestions


def test_resolve_model_with_nothing_close_has_no_suggestions():
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("zzzzzzzz")
    assert caught.value.suggestions == []


def test_resolve_model_returns_the_record():
    assert resolve_model("gemini-2.5-pro").api_id == "gemini-2.5-pro"


# ------------------------------------------------------------------------------ data


def test_every_brief_model_and_replacement_is_present():
    names = {m.name for m in all_models()}
    for provider, expected in BRIEF_MODELS.items():
        assert expected <= names
        assert all(get_model_info(n).provider == provider for n in expected)
    assert REPLACEMENTS <= names


@pytest.mark.parametrize(("name", "api_id"), sorted(CURRENT_MODELS.items()))
def test_every_current_model_resolves_by_api_id_and_canonical_name(name, api_id):
    by_name, by_id = resolve_model(name), resolve_model(api_id)
    assert by_name is by_id and by_name.name == name and by_name.api_id == api_id
    assert by_name.status_on(CHECK_DAY) != "retired"
    assert by_name.pricing.checked is not None and by_name.pricing.source


def test_replacement_walk_ends_at_a_current_model():
    """Every replacement resolves, and following them never loops and ends at a model that
    is active and not legacy on the check day (a lifecycle never points nowhere)."""
    unresolved, dead_ends = [], []
    for model in all_models():
        seen, current = {model.name}, model
        while current.lifecycle.replacement is not None:
            successor = get_model_info(current.lifecycle.replacement)
            if successor is None:
                unresolved.append(f"{current.name} -> {current.lifecycle.replacement}")
                break
            assert successor.name not in seen, f"replacement cycle through {successor.name}"
            seen.add(successor.name)
            current = successor
        else:
            if current is not model and (
                current.status_on(CHECK_DAY) != "active" or current.lifecycle.legacy
            ):
                dead_ends.append(f"{model.name} -> ... -> {current.name}")
    assert unresolved == [] and dead_ends == []


def test_every_deprecated_or_retired_model_names_a_replacement():
    missing = [
        m.name
        for m in all_models()
        if (m.status_on(CHECK_DAY) != "active" or m.lifecycle.legacy)
        and m.lifecycle.replacement is None
    ]
    assert missing == []


def test_audit_fixes():
    assert get_model_info("claude-sonnet-4.6").max_output_tokens == 128_000
    for name in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"):
        assert get_model_info(name).capabilities.min_cacheable_tokens == 2048


def test_new_tiers_and_dated_prices_are_recorded():
    haiku = get_model_info("claude-haiku-5.5").pricing
    assert haiku.long_context_threshold == 100_000
    assert (haiku.standard.input, haiku.long_context.input) == (D("0.1"), D("0.5"))
    sol = get_model_info("gpt-6.1-sol").pricing
    assert sol.long_context_threshold == 272_000
    assert sol.standard.cache_write_5m == D("2.5") == sol.standard.input * D("1.25")
    argon = get_model_info("gemini-4-argon").pricing
    assert [(c.effective_from, c.standard.input) for c in argon.changes] == [
        (dt.date(2026, 12, 1), D("4"))
    ]
    for name in ("gemini-3.6-flash", "gemini-3.7-flash", "gemini-3.8-flash"):
        (change,) = get_model_info(name).pricing.changes
        assert change.effective_from == dt.date(2027, 1, 1)


def test_price_changes_load_sorted_and_must_match_the_tiers():
    from llm.models import Pricing

    tier = {"input": "1", "output": "2"}
    pricing = Pricing.model_validate(
        {
            "standard": tier,
            "changes": [
                {"effective_from": "2027-02-01", "standard": tier},
                {"effective_from": "2027-01-01", "standard": tier},
            ],
        }
    )
    assert [c.effective_from.month for c in pricing.changes] == [1, 2]
    with pytest.raises(ValueError, match="same date"):
        Pricing.model_validate(
            {
                "standard": tier,
                "changes": [
                    {"effective_from": "2027-01-01", "standard": tier},
                    {"effective_from": "2027-01-01", "standard": tier},
                ],
            }
        )


def test_sonnet_45_prices_are_exact_decimals():
    pricing = get_model_info("claude-sonnet-4.5").pricing
    standard, long = pricing.standard, pricing.long_context
    assert (standard.input, standard.output, standard.cache_read) == (D("3"), D("15"), D("0.30"))
    assert (standard.cache_write_5m, standard.cache_write_1h) == (D("3.75"), D("6"))
    assert pricing.long_context_threshold == 200_000
    assert (long.input, long.output, long.cache_read) == (D("6"), D("22.50"), D("0.60"))
    assert (long.cache_write_5m, long.cache_write_1h) == (D("7.50"), D("12"))
    assert pricing.checked == dt.date(2026, 7, 29)


@pytest.mark.parametrize(
    ("name", "threshold"),
    [
        ("gemini-2.5-pro", 200_000),
        ("gemini-3-pro-preview", 200_000),
        ("gemini-3.1-pro-preview", 200_000),
        ("claude-sonnet-4.6", None),
        ("claude-opus-4.6", None),
        ("gpt-4.1", None),
        ("gemini-2.5-flash", None),
    ],
)
def test_long_context_thresholds(name, threshold):
    assert get_model_info(name).pricing.long_context_threshold == threshold


def test_openai_and_gemini_have_no_write_surcharge_rates():
    for name in ("gpt-5", "o3", "gemini-2.5-flash"):
        standard = get_model_info(name).pricing.standard
        assert standard.cache_write_5m is None and standard.cache_write_1h is None
    assert get_model_info("o4-mini").pricing.standard.cache_read == D("0.275")
    assert get_model_info("gemini-2.5-pro").pricing.cache_storage_per_hour == D("4.50")


@pytest.mark.parametrize(
    ("name", "minimum"),
    [
        ("claude-opus-4.5", 4096),
        ("claude-opus-4.6", 4096),
        ("claude-haiku-4.5", 4096),
        ("claude-sonnet-4.5", 1024),
        ("claude-opus-4.1", 1024),
        ("gpt-4o", 1024),
        ("gemini-2.5-flash", 2048),
        ("gemini-2.5-flash-lite", 2048),
        ("gemini-2.5-pro", 2048),
        ("gemini-3.1-pro-preview", 4096),
    ],
)
def test_min_cacheable_tokens(name, minimum):
    assert get_model_info(name).capabilities.min_cacheable_tokens == minimum


def test_capability_flags():
    assert get_model_info("claude-opus-4.1").capabilities.structured_output is False
    for name in ("o3", "o4-mini", "gpt-5", "gpt-5-mini"):
        caps = get_model_info(name).capabilities
        assert caps.reasoning_always_on and not caps.sampling_params
        assert caps.reasoning_style == "openai_effort"
    assert get_model_info("gemini-2.5-pro").capabilities.reasoning_always_on
    assert get_model_info("gemini-3.1-pro-preview").capabilities.reasoning_style == "gemini_level"
    assert not get_model_info("gemini-2.5-flash").capabilities.reasoning_always_on
    assert not get_model_info("gpt-4.1").capabilities.reasoning


# ------------------------------------------------------------------------------ lifecycle


@pytest.mark.parametrize(
    ("name", "day", "status"),
    [
        ("claude-sonnet-4.5", dt.date(2026, 11, 29), "deprecated"),
        ("claude-sonnet-4.5", dt.date(2026, 11, 30), "retired"),
        ("o4-mini", dt.date(2026, 10, 22), "deprecated"),
        ("o4-mini", dt.date(2026, 10, 23), "retired"),
        ("gemini-3-pro-preview", dt.date(2026, 3, 8), "deprecated"),
        ("gemini-3-pro-preview", dt.date(2026, 3, 9), "retired"),
        ("gemini-2.5-flash", dt.date(2026, 11, 30), "deprecated"),
        ("gemini-2.5-flash", dt.date(2026, 12, 1), "retired"),
        ("gpt-5-mini", dt.date(2026, 12, 10), "deprecated"),
        ("gpt-5-mini", dt.date(2026, 12, 11), "retired"),
        ("gpt-4o", dt.date(2027, 1, 13), "deprecated"),
        ("gpt-4o", dt.date(2027, 1, 14), "retired"),
        ("claude-opus-4.5", dt.date(2027, 1, 21), "deprecated"),
        ("claude-opus-4.5", dt.date(2027, 1, 22), "retired"),
        ("claude-opus-4.1", dt.date(2025, 1, 1), "retired"),
        ("claude-haiku-4.5", TODAY, "active"),
        ("gemini-2.5-flash-lite", dt.date(2030, 1, 1), "active"),
    ],
)
def test_status_around_boundaries(name, day, status):
    assert get_model_info(name).status_on(day) == status


@pytest.mark.parametrize(
    ("days_left", "status"), [(31, "active"), (30, "deprecated"), (1, "deprecated"), (0, "retired")]
)
def test_retirement_within_30_days_counts_as_deprecated(days_left, status):
    from llm.models import Lifecycle

    life = Lifecycle(
        deprecated_on=TODAY + dt.timedelta(days=days_left + 10),
        retires_on=TODAY + dt.timedelta(days=days_left),
    )
    assert life.status_on(TODAY) == status


def test_replacements_follow_the_table():
    expected = {
        "claude-sonnet-4.5": "claude-sonnet-5.5",
        "claude-opus-4.6": "claude-opus-5.5",
        "gpt-4o": "gpt-6-luna",
        "o4-mini": "gpt-5.6-terra",
        "gemini-3-pro-preview": "gemini-3.1-pro-preview",
        "gpt-5": "gpt-6.1-sol",
        "gpt-5-mini": "gpt-6.1-terra",
        "gpt-4.1": "gpt-6-luna",
    }
    for name, replacement in expected.items():
        assert get_model_info(name).lifecycle.replacement == replacement


def test_lifecycle_warnings():
    sonnet = get_model_info("claude-sonnet-4.5")
    assert lifecycle_warning(sonnet, TODAY) == (
        "claude-sonnet-4.5 is deprecated and retires on 2026-11-30; use claude-sonnet-5.5"
    )
    assert lifecycle_warning(get_model_info("o4-mini"), TODAY) == (
        "o4-mini was retired on 2026-10-23; use gpt-5.6-terra"
    )
    assert lifecycle_warning(get_model_info("claude-opus-4.1"), TODAY) == (
        "claude-opus-4.1 is retired; use claude-opus-5.5"
    )
    assert lifecycle_warning(get_model_info("o3"), TODAY) == (
        "o3 is deprecated and retires on 2026-12-11; use gpt-5.6-sol"
    )
    assert lifecycle_warning(get_model_info("claude-haiku-4.5"), TODAY) is None  # legacy
    assert lifecycle_warning(get_model_info("claude-sonnet-5.5"), TODAY) is None


def test_list_available_models_hides_retired():
    names = list_available_models(today=TODAY)
    assert {"o4-mini", "claude-opus-4.1", "gemini-3-pro-preview"}.isdisjoint(names)
    assert {"claude-sonnet-4.5", "gpt-5", "claude-haiku-4.5"} <= set(names)  # deprecated stay
    everything = list_available_models(include_retired=True, today=TODAY)
    assert len(everything) == len(all_models()) and "o4-mini" in everything


def test_list_available_models_by_provider():
    google = list_available_models("google", today=TODAY)
    assert google[:3] == ["gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"]
    assert "gemini-3-pro-preview" not in google and "gemini-4-argon" in google
    # on 2026-12-11 the gpt-5 family and o3 are gone; gpt-4.1 and gpt-4o remain
    openai = list_available_models("openai", today=dt.date(2026, 12, 11))
    assert {"gpt-5", "gpt-5-mini", "o3", "o4-mini"}.isdisjoint(openai)
    assert {"gpt-4.1", "gpt-4o", "gpt-6.1-sol"} <= set(openai)
    with pytest.raises(ValueError, match="provider"):
        list_available_models("mistral")


# ------------------------------------------------------------------------------ user files


USER_FILE = """
[models."claude-sonnet-4-5-20250929".pricing.standard]   # override by dated alias
input = "2.5"

[models."acme-local"]
provider = "openai"
api_id = "acme-local-v1"
aliases = ["acme"]
context_window = 32000
max_output_tokens = 4096
[models."acme-local".pricing.standard]
input = "0.05"
output = 0.15
"""


def test_user_file_adds_a_model_and_overrides_one_price(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(USER_FILE)
    registry = load_registry([path])
    sonnet = registry.get("claude-sonnet-4.5")
    assert sonnet.pricing.standard.input == D("2.5")
    # everything else about the built-in entry is kept
    assert sonnet.pricing.standard.output == D("15")
    assert sonnet.pricing.long_context.input == D("6")
    assert sonnet.lifecycle.replacement == "claude-sonnet-5.5"
    assert registry.get("claude-sonnet-4-5").pricing.standard.input == D("2.5")
    acme = registry.get("ACME")
    assert acme.name == "acme-local" and acme.api_id == "acme-local-v1"
    assert acme.pricing.standard.output == D("0.15")  # a TOML float still loads exactly
    assert len(registry) == len(load_registry()) + 1


def test_env_file_is_part_of_the_shared_registry(tmp_path, monkeypatch):
    path = tmp_path / "models.toml"
    path.write_text(USER_FILE)
    assert get_model_info("acme") is None
    monkeypatch.setenv(reg.MODELS_FILE_ENV, str(path))
    reset_registry()
    assert get_model_info("acme").name == "acme-local"
    assert get_registry() is get_registry()


def test_invalid_user_file_names_file_and_model(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models."broken"]\nprovider = "mistral"\napi_id = "x"\n')
    with pytest.raises(ValueError) as caught:
        load_registry([path])
    assert str(path) in str(caught.value) and "'broken'" in str(caught.value)


def test_invalid_override_names_file_and_model(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models."gpt-4o".pricing.standard]\ninput = "cheap"\n')
    with pytest.raises(ValueError, match="gpt-4o"):
        load_registry([path])


def test_unparsable_user_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[models\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_registry([path])
    with pytest.raises(ValueError, match="cannot read"):
        load_registry([tmp_path / "missing.toml"])


def test_add_replaces_by_canonical_name():
    registry = Registry(load_registry().models())
    cheaper = registry.get("gpt-4o").model_copy(update={"aliases": ("my-4o",)})
    registry.add(cheaper)
    assert registry.get("my-4o") is cheaper
    assert registry.get("gpt-4o-2024-08-06") is None  # old aliases went with the old record
    assert len(registry) == len(load_registry())
