"""Two drivers on a two-node cluster share one set of provider actors and one rate limit.

The cluster cannot live in the test process (the shared embedded session is there), so the
test runs this file as a script: ``cluster`` mode builds a head node (with the ``llm_head``
resource of ``cluster.yaml``) plus a worker node with :class:`ray.cluster_utils.Cluster`,
starts an emulator that enforces ``RPM`` requests per minute, and starts two ``driver``
processes. Each driver joins the cluster with its own :class:`~actors.runtime.Runtime` and
sends ``CALLS`` requests at once. Together they send more than the emulator's minute allows,
so only a limiter shared by both drivers (one provider actor) keeps the emulator from
answering 429.

The key is where a user joining with ``--address`` has it: in each driver's own environment
(``ANTHROPIC_API_KEY``), not in the cluster's, and the emulator accepts only that key. The
drivers' key reaches the one shared actor (runtime/keys.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid

import pytest

RPM = 60
CALLS = 35  # per driver; 2 x 35 = 70 > RPM, so ten calls must wait for the shared bucket
ENV = {"LLM_LIMITS_ANTHROPIC_RPM": str(RPM), "RAY_AUTH_MODE": "disabled"}
DRIVER_KEY = "sk-ant-only-in-the-drivers-environment-0042"


@pytest.mark.ray
@pytest.mark.slow
def test_two_drivers_share_the_provider_actor_and_its_rate_limit():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, **ENV, "PYTHONPATH": root}  # this checkout's code, in every process
    done = subprocess.run(
        [sys.executable, __file__, "cluster"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    first, second = report["drivers"]
    assert first["ok"] == second["ok"] == CALLS
    assert first["actor"]["pid"] == second["actor"]["pid"]  # one actor served both drivers
    assert first["actor"]["key_source"] == "the driver"  # the cluster has no key
    anthropic = [n for n in second["names"] if n.startswith("llm-provider-anthropic-")]
    assert len(anthropic) == 1 and DRIVER_KEY not in done.stdout + done.stderr
    assert first["actor"]["node_id"] == report["head_node_id"]  # pinned by llm_head
    assert report["ledger_rows"] == 2 * CALLS
    assert report["emulator_429"] <= 2  # without a shared limiter it would be about ten


# --- script modes ----------------------------------------------------------------------------


def run_cluster() -> dict:
    from ray.cluster_utils import Cluster

    from llm.emulator.server import EmulatorConfig, start_in_thread

    # Two seconds of burst: the shared bucket paces at RPM, and arrival jitter on a loaded
    # machine can put two paced calls inside one one-second window (3 x 429 seen under a
    # concurrent benchmark). Two drivers with a limiter each still send twice the rate.
    emulator = start_in_thread(EmulatorConfig(rpm=RPM, api_key=DRIVER_KEY, burst_s=2.0))
    assert not any(name.endswith("_API_KEY") for name in os.environ)  # none in the cluster
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"llm_head": 1}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ledger_dir = tempfile.mkdtemp(prefix="llm-cluster-ledger-")
        # A namespace of its own: another process on this machine joining "auto" must not
        # be able to hand our drivers its actors (or use ours).
        namespace = f"llm-cluster-test-{uuid.uuid4().hex[:8]}"
        args = [cluster.address, emulator.base_url, ledger_dir, namespace]
        drivers = [
            subprocess.Popen(
                [sys.executable, __file__, "driver", *args, str(n)],
                env={**os.environ, "ANTHROPIC_API_KEY": DRIVER_KEY},
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        outputs = [
            json.loads(d.communicate(timeout=90)[0].strip().splitlines()[-1]) for d in drivers
        ]
        from runtime.ledger_store import read_ledger

        return {
            "drivers": outputs,
            "head_node_id": cluster.head_node.node_id,
            "ledger_rows": read_ledger(ledger_dir).num_rows,
            "emulator_429": emulator.engine.stats.rate_limited,
        }
    finally:
        cluster.shutdown()
        emulator.stop()


async def run_driver(address: str, base_url: str, ledger_dir: str, namespace: str, n: str) -> dict:
    from actors.runtime import Runtime
    from llm.config import load_settings
    from llm.retry import RetryConfig
    from llm.service import LLMService

    settings = load_settings(dotenv_path=None).with_overrides(  # the key: from the environment
        anthropic_base_url=base_url.rstrip("/"), ledger_dir=ledger_dir
    )
    retry = RetryConfig(initial_delay=0.05, max_delay=0.5, jitter=False)
    runtime = Runtime(address, namespace=namespace, settings=settings, retry_config=retry).start()
    service = LLMService(settings=settings, executor=runtime.executor())
    answers = await asyncio.gather(
        *(
            service.generate(
                model="claude-haiku-4.5",
                messages=[{"role": "user", "content": f"driver {n} question {i}"}],
                request_id=f"driver-{n}-{i}",
            )
            for i in range(CALLS)
        )
    )
    (actor,) = runtime.provider_actors()["anthropic"]
    described = await actor.describe.remote()
    import ray

    named = ray.util.list_named_actors(all_namespaces=True)
    names = sorted(a["name"] for a in named if a["namespace"] == namespace)
    await service.aclose()
    runtime.shutdown()
    return {"ok": sum(1 for a in answers if a.text), "actor": described, "names": names}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "cluster":
        print(json.dumps(run_cluster()))
    else:
        print(json.dumps(asyncio.run(run_driver(*sys.argv[2:7]))))
