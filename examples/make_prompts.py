"""Generate ``examples/prompts.jsonl``, the demo input of the batch job (deterministic).

    python examples/make_prompts.py [OUT]

About 300 rows over three providers: plain prompts, four groups sharing a long (> 4,096
token) system prompt with ``enable_caching``, structured output, tools, reasoning,
task+budget rows, a few transient faults the emulator injects once (the retry hides
them), and five deliberately bad rows (malformed JSON, unknown model, invalid schema,
empty messages, a wrong type) that become error rows while the job goes on.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

MODELS = [
    "claude-haiku-5.5",
    "claude-sonnet-5.5",
    "gpt-6.1-terra",
    "gemini-3.8-flash",
    "gemini-3.5-flash-lite",
]
TOPICS = [
    "photosynthesis",
    "the French revolution",
    "binary search",
    "plate tectonics",
    "jazz",
    "compound interest",
    "the immune system",
    "supply chains",
    "black holes",
    "typography",
    "the printing press",
    "neural networks",
    "coral reefs",
    "the Roman roads",
    "vaccines",
    "cloud computing",
    "volcanoes",
    "the stock market",
    "bees",
    "public key cryptography",
]
ASKS = [
    "Explain {t} to a curious twelve-year-old in three sentences.",
    "Write a haiku about {t}.",
    "Give three surprising facts about {t}.",
    "Summarize the main ideas of {t} in one paragraph.",
    "What is a common misconception about {t}?",
]
HANDBOOK_TERMS = [
    "refund",
    "warranty",
    "shipping",
    "invoice",
    "account",
    "privacy",
    "escalation",
    "returns",
    "subscription",
    "billing",
    "delivery",
    "exchange",
    "support",
    "loyalty",
    "discount",
]
SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["sentiment", "confidence"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city"],
    },
}
CITIES = ["Paris", "Lagos", "Lima", "Osaka", "Oslo", "Austin", "Pune", "Cairo", "Perth", "Quito"]
REVIEWS = [
    "The blender arrived broken and support never answered.",
    "Fine product, does what it says, nothing more.",
    "Absolutely love it, best purchase this year!",
    "Shipping took three weeks but the quality is great.",
    "It works, I guess. The manual is confusing.",
]


def handbook(company: str, rng: random.Random, sections: int = 85) -> str:
    """A long, deterministic support handbook (about 40 tokens per section)."""
    lines = [f"You are the support assistant of {company}. Follow this handbook exactly."]
    for number in range(1, sections + 1):
        a, b = rng.sample(HANDBOOK_TERMS, 2)
        days = rng.randint(2, 90)
        lines.append(
            f"Section {number}: for {a} questions that involve {b}, check the customer's "
            f"history first, answer within {days} days, quote policy {company[:3].upper()}-"
            f"{number:03d}, and never promise more than the policy allows."
        )
    return "\n".join(lines)


def plain_rows(rng: random.Random) -> list[dict]:
    rows = []
    for index in range(165):
        topic, ask = rng.choice(TOPICS), rng.choice(ASKS)
        row = {"id": f"plain-{index:03d}", "model": MODELS[index % len(MODELS)]}
        if index % 2:
            row["prompt"] = ask.format(t=topic)
        else:
            row["messages"] = [{"role": "user", "content": ask.format(t=topic)}]
        row["max_tokens"] = rng.choice([120, 200, 300])
        temperature = round(rng.uniform(0, 1), 2)
        # Anthropic (API 2026-10-21) and OpenAI's current reasoning models take no sampling
        # parameters; only the Gemini rows carry a temperature.
        if row["model"].startswith("gemini-"):
            row["temperature"] = temperature
        rows.append(row)
    return rows


def cached_rows(rng: random.Random) -> list[dict]:
    groups = [
        ("claude-haiku-5.5", "Acme Outfitters"),
        ("claude-sonnet-5.5", "Borealis Bank"),
        ("gpt-6.1-terra", "Cobalt Telecom"),
        ("gemini-3.8-flash", "Dune Travel"),
    ]
    rows = []
    for model, company in groups:
        system = handbook(company, rng)
        slug = company.split()[0].lower()
        for index in range(15):
            term = rng.choice(HANDBOOK_TERMS)
            rows.append(
                {
                    "id": f"cached-{slug}-{index:02d}",
                    "model": model,
                    "system": system,
                    "prompt": f"A customer asks about {term} (ticket {index}). Draft a reply.",
                    "enable_caching": True,
                    "max_tokens": 200,
                }
            )
    return rows


def feature_rows(rng: random.Random) -> list[dict]:
    rows = []
    for index in range(25):
        rows.append(
            {
                "id": f"structured-{index:02d}",
                "model": ["gpt-6.1-terra", "gemini-3.8-flash", "claude-sonnet-5.5"][index % 3],
                "prompt": f"Classify this review: {REVIEWS[index % len(REVIEWS)]}",
                "structured_output_schema": SENTIMENT_SCHEMA,
                "max_tokens": 100,
            }
        )
    for index in range(20):
        rows.append(
            {
                "id": f"tool-{index:02d}",
                "model": ["claude-haiku-5.5", "gpt-6.1-terra", "gemini-3.5-flash-lite"][index % 3],
                "prompt": f"What's the weather in {CITIES[index % len(CITIES)]} right now?",
                "tools": [WEATHER_TOOL],
                "tool_choice": "auto",
                "max_tokens": 150,
            }
        )
    for index in range(10):
        rows.append(
            {
                "id": f"reasoning-{index:02d}",
                "model": ["claude-sonnet-5.5", "gemini-3.8-flash"][index % 2],
                "prompt": f"A train leaves at {8 + index}:00 at 80 km/h; another at "
                f"{9 + index}:00 at 120 km/h. When does the second catch up?",
                "reasoning_effort": "low",
                "max_tokens": 2048,
            }
        )
    tasks = ["summarization", "classification", "code_generation", "general", "fast_evaluation"]
    for index in range(10):
        rows.append(
            {
                "id": f"task-{index:02d}",
                "task": tasks[index % len(tasks)],
                "budget": ["low", "medium"][index % 2],
                "prompt": f"Help with this: {rng.choice(ASKS).format(t=rng.choice(TOPICS))}",
                "max_tokens": 200,
            }
        )
    for index, fault in enumerate(["429", "529", "503"]):
        rows.append(
            {
                "id": f"flaky-{index}",
                "model": MODELS[index],
                "prompt": f"Say hello. [[emu:fault={fault},times=1]]",
                "max_tokens": 50,
            }
        )
    return rows


BAD_ROWS = [
    '{"id": "bad-json", "model": "gpt-6.1-terra", "prompt": "unterminated',
    json.dumps({"id": "bad-model", "model": "gpt-9-ultra", "prompt": "Hi"}),
    json.dumps(
        {
            "id": "bad-schema",
            "model": "gpt-6.1-terra",
            "prompt": "Hi",
            "structured_output_schema": {"type": "objekt"},
        }
    ),
    json.dumps({"id": "bad-empty", "model": "claude-haiku-5.5", "messages": []}),
    json.dumps(
        {"id": "bad-type", "model": "gemini-3.8-flash", "prompt": "Hi", "max_tokens": "lots"}
    ),
]


def build_lines(seed: int = 7) -> list[str]:
    """Every line of the demo file, rows shuffled so the groups interleave."""
    rng = random.Random(seed)
    rows = plain_rows(rng) + cached_rows(rng) + feature_rows(rng)
    rng.shuffle(rows)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    for offset, bad in enumerate(BAD_ROWS):
        lines.insert(37 + offset * 53, bad)
    return lines


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("prompts.jsonl")
    lines = build_lines()
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} rows, {out.stat().st_size / 1e6:.2f} MB to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
