"""Records that cross folders check themselves and survive the trip to a worker."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from grace.tasks import get_task
from grace.types import EvalResult, Example, PPOJob, PPOResult, TaskRef, Transitions

ROOT = Path(__file__).resolve().parents[1]


def _transitions(n: int = 6) -> Transitions:
    rng = np.random.default_rng(0)
    return Transitions.from_arrays(
        ("expert", "random"), s=rng.normal(size=(n, 3)), a=rng.integers(0, 2, n), s_next=rng.normal(size=(n, 3)),
        label=np.arange(n) % 2 == 0, train=np.arange(n) < n - 2, episode=np.arange(n) // 2,
        step=np.arange(n) % 2, source=(np.arange(n) % 2 == 1).astype(int))


def test_transitions_check_shapes_dtypes_and_sources() -> None:
    t = _transitions()
    assert t.s.dtype == np.float32 and t.a.dtype == np.int64 and t.label.dtype == np.int8 and t.n == 6
    assert t["s_next"] is t.s_next and "label" in t and set(t) >= {"s", "a", "source_names"}
    with pytest.raises(ValueError, match="read-only"):
        t.s[0, 0] = 1.0
    fields = {k: t[k] for k in Transitions.ARRAYS}
    with pytest.raises(ValueError, match="rows"):
        Transitions(**(fields | {"label": t.label[:3]}), source_names=t.source_names)
    with pytest.raises(TypeError, match="float32"):
        Transitions(**(fields | {"s": t.s.astype(np.float64)}), source_names=t.source_names)
    with pytest.raises(ValueError, match="source indices"):
        Transitions(**fields, source_names=("expert",))
    with pytest.raises(ValueError, match="start with 'expert'"):
        Transitions(**fields, source_names=("random", "expert"))
    cont = Transitions.from_arrays(("expert",), **(fields | {"a": np.ones(6), "source": np.zeros(6)}))
    assert cont.a.shape == (6, 1) and cont.a.dtype == np.float32


def test_transitions_are_rebuilt_and_checked_when_unpickled() -> None:
    t = _transitions()
    back = pickle.loads(pickle.dumps(t, protocol=5))
    assert np.array_equal(back.s, t.s) and back.source_names == ("expert", "random")
    assert not back.s.flags.writeable  # read-only in the worker too
    sub = t.subset(t.train)
    assert sub.n == 4 and sub.source_names == t.source_names


def test_eval_result_is_plain_data_and_examples_read_like_dicts() -> None:
    w = Example(label="expert", source="expert", reward=0.5, state={"x": 1.0}, components={"c": 2.0},
                episode=3, step=4)
    assert w["state"] == {"x": 1.0} and w.get("reward") == 0.5 and dict(w) == w.to_dict()
    res = EvalResult(fitness=0.9, heldout_fitness=0.8, metrics={"auc_train": 1.0}, params={"t": 1.0},
                     worst=(w.to_dict(),), n_evals=3)
    assert res.ok and res.worst == (w,)  # dicts (e.g. from the archive) become Examples
    assert json.loads(json.dumps(res.to_dict()))["worst"][0]["episode"] == 3
    bad = EvalResult.failed("timeout", "took too long", 2.0)
    assert not bad.ok and bad.fitness is None and bad.error_kind == "timeout"
    with pytest.raises(ValueError):
        EvalResult()
    with pytest.raises(ValueError):
        Example(label="maybe", source="x", reward=0.0, state={})


def test_ppo_records_check_themselves() -> None:
    job = PPOJob(["a", "b"], steps=100)
    assert job.sources == ("a", "b") and job.seeds == 2
    for bad in ({"sources": ()}, {"sources": ("a",), "steps": 0}, {"sources": ("a",), "seeds": 0}):
        with pytest.raises(ValueError):
            PPOJob(**({"steps": 100} | bad))
    ok = PPOResult(true_return_mean=1.0, true_returns=[1.0])
    assert ok.ok and "trajectories" not in ok.to_dict()
    assert not PPOResult(error="no").ok
    with pytest.raises(ValueError):
        PPOResult()


def test_task_ref_by_name_by_toml_path_or_by_value() -> None:
    assert TaskRef.of("cartpole").spec == "cartpole"
    assert TaskRef.of(get_task("cartpole")).spec == "cartpole"
    toml = TaskRef.of(get_task(str(ROOT / "examples/tasks/point_reach.toml")))
    assert Path(toml.spec).is_absolute() and toml.resolve().name == "point_reach"
    assert toml.import_paths() == (str(ROOT / "examples/tasks"),)
    import dataclasses

    mine = dataclasses.replace(get_task("cartpole"), name="mine")
    ref = TaskRef.of(mine)
    assert ref.spec is mine and ref.name == "mine"
    assert pickle.loads(pickle.dumps(ref)).resolve().name == "mine"
