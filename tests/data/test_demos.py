from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.data.rollout import collect_expert
from grace.data.trajectories import DemoError, Episode, Trajectories, load_demos, summarise
from grace.tasks import get_task
from tests.conftest import DEMOS, run_cli


@st.composite
def trajectories(draw, obs_dim=3, discrete=True):
    n = draw(st.integers(1, 4))
    eps = []
    for _ in range(n):
        t = draw(st.integers(1, 6))
        obs = np.asarray(draw(st.lists(st.floats(-10, 10, width=32), min_size=(t + 1) * obs_dim,
                                       max_size=(t + 1) * obs_dim)), np.float32).reshape(t + 1, obs_dim)
        acts = np.asarray(draw(st.lists(st.integers(0, 1), min_size=t, max_size=t)), np.int64)
        term = draw(st.booleans())
        eps.append(Episode(obs, acts, np.arange(t, dtype=np.float32), term, not term))
    return Trajectories.from_episodes(eps, meta={"task": "t"})


def _same(a: Trajectories, b: Trajectories) -> None:
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(a.terminated, b.terminated)
    np.testing.assert_array_equal(a.rewards, b.rewards)


@settings(max_examples=30, deadline=None)
@given(trajectories())
def test_npz_round_trip(tmp_path_factory, traj):
    path = tmp_path_factory.mktemp("d") / "x.npz"
    traj.save(path)
    back = load_demos(path)
    _same(traj, back)
    np.testing.assert_array_equal(traj.truncated, back.truncated)
    assert back.meta["task"] == "t"


@settings(max_examples=30, deadline=None)
@given(trajectories())
def test_imitation_round_trip(tmp_path_factory, traj):
    path = tmp_path_factory.mktemp("d") / "x.npz"
    traj.save_imitation(path)
    _same(traj, load_demos(path))


@settings(max_examples=20, deadline=None)
@given(trajectories())
def test_transitions_line_up(traj):
    tr = traj.transitions()
    assert len(tr["s"]) == traj.n_transitions
    for i, ep in enumerate(traj.episodes()):
        rows = np.flatnonzero(tr["episode"] == i)
        np.testing.assert_array_equal(tr["s"][rows], ep.obs[:-1])
        np.testing.assert_array_equal(tr["s_next"][rows], ep.obs[1:])
        assert tr["last"][rows[-1]] and tr["terminal"][rows[-1]] == ep.terminated


def test_minari_round_trip(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from grace.data.trajectories import load_minari, save_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    task = get_task("cartpole")
    traj = collect_expert(task, 2)
    save_minari(traj, "grace/cartpole-test-v0", task)
    back = load_minari("grace/cartpole-test-v0")
    _same(traj, back)
    assert minari is not None


def test_committed_demos_validate():
    for name in ["cartpole", "cartpole_fixed", "mountaincar", "mountaincar_fixed", "acrobot",
                 "acrobot_fixed", "pendulum", "inverted_pendulum"]:
        traj = load_demos(DEMOS / f"{name}.npz", get_task(name))
        assert traj.n_episodes == 8 and traj.meta["task"] == name


def test_collect_reproduces_committed_return():
    committed = load_demos(DEMOS / "acrobot.npz")
    again = collect_expert(get_task("acrobot"), 8, seed=0)
    assert summarise(again)["return_mean"] == pytest.approx(committed.meta["mean_return"])
    np.testing.assert_allclose(again.obs, committed.obs)


def test_width_mismatch_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.npz"
    load_demos(DEMOS / "pendulum.npz").save(path)
    with pytest.raises(DemoError, match=r"width 3 but the task's observation schema has width 4"):
        load_demos(path, get_task("cartpole"))
    res = run_cli("demos", "show", str(path), "--task", "cartpole")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "width 3" in res.stderr and "width 4" in res.stderr and "Traceback" not in res.stderr


def test_bad_files(tmp_path):
    with pytest.raises(DemoError, match="does not exist"):
        load_demos(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DemoError, match="not a readable .npz"):
        load_demos(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(DemoError, match="unknown dataset layout"):
        load_demos(tmp_path / "other.npz")
