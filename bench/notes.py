"""The "how each figure is measured" section of docs/benchmarks.md (markdown text)."""

from __future__ import annotations

METHOD = """## How each figure is measured

**Rate-limit efficiency** (`bench/rate.py`). One emulator enforcing 600 requests/min and an
input-token limit set so that, for this workload, it binds slightly before the request
limit (OpenAI's TPM, as the emulator models it); 300 ms to the first token; `gpt-4.1`;
prompts of 150–450 tokens, `max_tokens` 64; concurrency 32 for every client that has a
concurrency knob. Before each contender the emulator is reset and its buckets are
*emptied*: a fresh bucket holds a full minute of the limit, so a run of a few hundred
requests would otherwise mostly measure that one-off burst; starting at the limit (as
right after another job) measures the sustained rate. With empty buckets at time 0 the
emulator can admit at most `rate x w` requests (tokens) in `w` seconds, where `w` is the
time of the last answer minus the 300 ms latency. The figure is the binding limit's share
used in that window, i.e. achieved throughput / enforced limit. 429 answers are counted by
the emulator and split at the moment 10 % of the requests had finished ("warm-up").
Contenders:
- *runtime*: `LLMService` over `runtime.local.EngineExecutor` (the same `ProviderEngine` the
  provider actors host), told the account's limits; retries by `RetryConfig()` (3).
- *gather+semaphore*: `asyncio.gather` behind a semaphore with `openai.AsyncOpenAI` and its
  default retries (2, honouring `retry-after`); requests still failing are given up.
- *cookbook*: the OpenAI cookbook's `api_request_parallel_processor` algorithm rewritten
  from its description (`bench/cookbook.py`): two continuously refilled buckets starting
  full, estimate = prompt tokens + `max_tokens`, a 15 s global pause after any 429, 5
  attempts; limits set to the provider's rpm/tpm. Its estimate counts `max_tokens`, which
  the emulator's input limit does not, so it is paced below the limit by design.
- *litellm-router*: `litellm.Router` with `rpm`/`tpm` on the deployment,
  `routing_strategy="usage-based-routing-v2"`, `enable_pre_call_checks=True`,
  `num_retries=3`, `api_base` the emulator's OpenAI endpoint.
- *runtime-2000* (full run only): the runtime on 2,000 requests; target: at least 95 % of
  the enforced rate with at most 1 % of requests answered 429.

**Real regime** (`bench/realregime.py`). What batch jobs really meet: an emulator in its
own process answering after a lognormal latency (median 4 s, sigma 0.6, p99 near 16 s,
seeded), enforcing an account's RPM over one-second windows (3,000 RPM admits about 50 at
once, then 50/s; a fresh, idle account before each contender) and sending
`anthropic-ratelimit-*` / `x-ratelimit-*` headers on every answer; **no limit configured**
in any of this project's contenders, default flags. Accounts: 3,000 RPM (600 rows, 60 s
per contender, in a quick run; 1,200 rows in a full run) and 10,000 RPM (3,000 rows, full
run only). Rows are 50–150-token prompts with `max_tokens` 64. Figure = the share of the
account's rate used, measured by the emulator: admissions / (RPM / 60 x busy window + one
second's burst), the busy window running from the first request to the last admission.
Also from the emulator: 429 answers (all, and after the first second) and the most calls
in flight at once; from the bench: rows ok / failed / unfinished at the cap, CPU seconds
of the driver(s) and of the rest of the job's process tree (Ray's processes, the actors),
sampled every 0.5 s. Contenders: *jobs.batch* (`python -m jobs.batch rows.jsonl --output
DIR`, Ray embedded); *jobs.batch x2 --address* (`ray start --head` started by the bench
with the keys in its environment, two drivers with half the rows each, one account);
*LLMService gather* (`asyncio.gather` over `LLMService().generate()` in process); and, as
peers, *gather+semaphore* (256 slots, `anthropic.AsyncAnthropic(max_retries=8)`),
*cookbook* (as above, OpenAI's API, rpm = the account's) and *litellm-router* (OpenAI's
API, `rpm` = the account's, 256 concurrent, 5 retries). Targets for this project's rows:
>= 0.95 of the rate and 0 x 429 after the first second, nothing failed or unfinished.
The token limits the 10,000 RPM account reports keep the default tier's tokens per request
(5,000,000 ITPM, 1,000,000 OTPM; Tier 4's 400,000 OTPM, which this project obeys, bound
it at 105–140 requests/s with about 60 output tokens reserved per request). What the figure
allows: the denominator credits a full second's burst at the start, and nobody knows the
limit before the first answer's headers. Until then the slow start sends at most 80
requests per second, spaced, never more than an account of 2,400 RPM would admit over a
one-second window, and sends them as streams: a stream's headers come before its first
token (the emulator sends them after the delay the real APIs' recorded streams took, from
`../shared/replay-corpus`: Anthropic median 0.94 s, sigma 0.8, OpenAI 0.36 s, never later
than the first token), a whole answer's only with its body (here 1-1.6 s for the fastest of
the slow start's calls). The budget the slow start left unused goes out right after the
headers (what half the provider's one-second window plus the refill since the first
request holds, less what was sent, at most 0.9 s of the rate). The *steady* share in the
raw numbers (admissions after the first 3 s over the rate for the rest of the window)
shows the rest of the run on its own; on a long job the start-up weighs nothing. With the
emulator's headers at the first token (`--stream-headers first-token`, as before), the
same run's 10,000 RPM figures read 0.927 / 0.937 / 0.941 on the day they read 0.969 /
0.959 / 0.982 with the recorded delays (a script outside the bench reusing
`bench.realregime.measure`, one run each).

**Prompt-cache cost** (`bench/cache.py`). N requests (quick 40, full 200) sharing a
~5,000-token system prompt, `claude-sonnet-4.6`, `enable_caching=True`, concurrency 16,
300 ms latency, fresh emulator (empty cache) per contender, one small uncached warm-up call
first. Minimum = the same requests (same input and output token counts) priced as one full
cache write of the shared prefix and N−1 full reads, with `llm.pricing.compute_cost`
(Decimal). Figure = billed / minimum. *naive fan-out* is `LLMService` over the plain
`LocalExecutor` (no cache gate): every request of the first wave misses and writes.

**Overhead** (`bench/overhead.py`). A zero-latency emulator in its own process; small
requests at concurrency 32. Every path is opened and warmed up (20 calls) first, Ray
included (started once, outside any timing, with `RAY_ADDRESS=local`: a Ray of its own);
then the paths take turns, round by round (quick 3 rounds of 300 requests, full 3 of
2,000), so background load hits them alike, and each path's figure is its median round.
Figure = the path's requests/s divided by the in-process path's (`LLMService`'s default,
the in-process runtime); the target (>= 0.5) applies to the actor path. The actor path
also journals every call in the ledger actor before answering; the in-process path runs
without a ledger here. On 2 cores the emulator, the driver and Ray's processes share the
CPU, so this figure is a floor.

**Scale** (`bench/scale.py`). `python -m jobs.batch rows.jsonl --output DIR` with its
defaults (Ray embedded in the job, concurrency 32) in a fresh child process per size, on
synthetic rows (quick 1k and 10k, full 10k and 100k), against a zero-latency emulator in
another process. Three figures, each a peak resident set (`VmHWM`) at the large size / at
the small size, target <= 1.1: the job process (written by a small wrapper when the job
ends), the LedgerActor's process and the busiest ProviderActor's (found among the job's
descendants by their Ray process title, read every 0.5 s). Each also gives its per-row
slope between the two sizes and the peak that slope extrapolates to at 1,000,000 rows. The
size of the ledger's journal (`<ledger>/_journal`) is sampled alongside: its peak and its
size after the job, in bytes per row. The peak of the whole process tree (the job plus
Ray's GCS, raylet and actor workers) is sampled every 0.5 s and reported too.

Every figure that could not be measured says why ("not measured (…)"); no number is ever
filled in. Runs are bounded in time; all traffic is loopback.
"""
