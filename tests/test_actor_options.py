"""The options every runtime actor is created with (no Ray cluster needed).

Each row of a batch job is one Ray task on the provider actor (and the ledger actor follows
every row). Ray's per-task events made those actors' native memory grow with the job's rows
(about 1 KiB per row in the provider actor, see docs/benchmarks.md, "The ledger at scale"),
so the runtime's actors are created with task events off. This pins it.
"""

from __future__ import annotations

import pytest

from actors import factory

ray = pytest.importorskip("ray")


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """``actor_options`` asks the cluster for the head resource: an embedded-like answer."""
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})


@pytest.mark.parametrize(
    "name",
    [factory.LEDGER_NAME, factory.ROUTER_NAME, factory.provider_actor_name("openai", "default")],
)
def test_runtime_actors_record_no_task_events(no_cluster: None, name: str) -> None:
    options = factory.actor_options(name, "llm")
    assert options["enable_task_events"] is False
    assert "resources" not in options  # no head resource: no pin


def test_ray_accepts_the_options(no_cluster: None) -> None:
    class Probe:
        def ping(self) -> int:
            return 1

    # Ray validates actor options when they are set, without a cluster: a renamed or
    # misspelt option fails here, not in the first Ray job.
    options = factory.actor_options(factory.LEDGER_NAME, "llm")
    handle_class = ray.remote(Probe).options(**options)
    assert handle_class is not None
