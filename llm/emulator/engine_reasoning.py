"""Which reasoning settings each model accepts: the 400s the real APIs answer.

Value checks that need no model (an unknown effort word, an unknown Gemini thinking level,
Anthropic's ``output_config.effort``) live in the wire modules; the checks here need the
model's registry record, so the engine runs them (:func:`check_reasoning`) once it knows
the model. Wording and shape follow each provider:

* Anthropic: ``output_config.effort`` ``xhigh`` on a model that does not take it (taken by
  Claude Opus 4.7, 4.8 and 5, refused by Opus 4.6, as recorded from the real API).
* OpenAI: ``reasoning_effort`` (Chat) or ``reasoning.effort`` (Responses) on a model that
  does not reason → ``unsupported_parameter``; a ``system``/``developer`` message to
  o1-mini or o1-preview → ``unsupported_value`` (recorded).
* Gemini: ``thinkingLevel`` on a 2.5 (budget-style) model; a ``thinkingBudget`` outside the
  model's range (2.5 Pro 128–32768 and never 0; Flash 0–24576; Flash-Lite 0 or 512–24576,
  ranges from Google's thinking guide).
"""

from __future__ import annotations

from llm.emulator.openai_common import invalid
from llm.emulator.protocol import EmuError, EmuRequest
from llm.models import ModelInfo

#: api id prefix → (smallest budget, largest budget, whether 0 switches thinking off)
GEMINI_BUDGET_RANGES: tuple[tuple[str, tuple[int, int, bool]], ...] = (
    ("gemini-2.5-flash-lite", (512, 24576, True)),
    ("gemini-2.5-flash", (1, 24576, True)),
    ("gemini-2.5-pro", (128, 32768, False)),
)


def _gemini_range(info: ModelInfo) -> tuple[int, int, bool] | None:
    api_id = info.api_id.removeprefix("models/")
    for prefix, bounds in GEMINI_BUDGET_RANGES:
        if api_id.startswith(prefix):
            return bounds
    return None


#: Anthropic models known (from recorded real answers) to accept effort ``xhigh``.
XHIGH_MODELS = ("claude-opus-4-7", "claude-opus-4-8", "claude-opus-5")
#: OpenAI models that take neither a system nor a developer message.
NO_INSTRUCTION_ROLE = ("o1-mini", "o1-preview")
_ANTHROPIC_EFFORTS = "high, low, max, medium"


def _check_anthropic(req: EmuRequest, info: ModelInfo) -> None:
    if req.echo.get("effort") != "xhigh" or info.api_id.startswith(XHIGH_MODELS):
        return
    raise EmuError(
        "invalid_request",
        "This model does not support effort level 'xhigh'. "
        f"Supported levels: {_ANTHROPIC_EFFORTS}.",
    )


def _check_openai(req: EmuRequest, info: ModelInfo) -> None:
    instruction = req.echo.get("instruction_role")
    if instruction and info.api_id.startswith(NO_INSTRUCTION_ROLE):
        index, role = instruction
        raise invalid(
            f"Unsupported value: 'messages[{index}].role' does not support '{role}' with "
            "this model.",
            param=f"messages[{index}].role",
            code="unsupported_value",
        )
    if req.reasoning_effort is None or info.capabilities.reasoning:
        return
    param = "reasoning.effort" if req.api == "responses" else "reasoning_effort"
    raise invalid(
        f"Unsupported parameter: '{param}' is not supported with this model.",
        param=param,
        code="unsupported_parameter",
    )


def _check_gemini(req: EmuRequest, info: ModelInfo) -> None:
    style = info.capabilities.reasoning_style
    if req.reasoning_effort is not None and style != "gemini_level":
        raise EmuError("invalid_request", "Thinking level is not supported for this model.")
    budget = req.reasoning_budget
    bounds = _gemini_range(info)
    if budget is None or bounds is None:
        return
    low, high, can_disable = bounds
    if budget == 0:
        if not can_disable:
            raise EmuError(
                "invalid_request", "Budget 0 is invalid. This model only works in thinking mode."
            )
        return
    if not low <= budget <= high:
        raise EmuError(
            "invalid_request",
            f"The thinking budget {budget} is invalid. Please choose a value between "
            f"{low} and {high}.",
        )


def check_reasoning(req: EmuRequest, info: ModelInfo) -> None:
    """Raise the provider's 400 when ``info`` does not accept the request's reasoning."""
    if req.provider == "anthropic":
        _check_anthropic(req, info)
    elif req.provider == "openai":
        _check_openai(req, info)
    elif req.provider == "google":
        _check_gemini(req, info)
