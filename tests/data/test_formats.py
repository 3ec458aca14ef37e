"""Users' data where it lives: D4RL-style flat arrays (npz, HDF5) and imitation's HuggingFace
`datasets` folder, read into the same Trajectories with the same checks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from grace.data.trajectories import DemoError, Trajectories, load_demos
from grace.tasks import get_task
from tests.conftest import DEMOS


@pytest.fixture(scope="module")
def cartpole() -> Trajectories:
    """Committed cartpole demos with the last episode cut by a time limit (both flags occur)."""
    traj = load_demos(DEMOS / "cartpole.npz")
    traj.terminated[-1], traj.truncated[-1] = False, True
    traj.terminated[0], traj.truncated[0] = True, False
    return traj


def _d4rl(traj: Trajectories, next_obs: bool = True) -> dict[str, np.ndarray]:
    tr = traj.transitions()
    ep = tr["episode"]
    out = {
        "observations": tr["s"], "actions": tr["a"], "rewards": traj.rewards,
        "terminals": tr["last"] & traj.terminated[ep], "timeouts": tr["last"] & traj.truncated[ep],
    }
    if next_obs:
        out["next_observations"] = tr["s_next"]
    return out


def _same(a: Trajectories, b: Trajectories) -> None:
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(a.terminated, b.terminated)
    np.testing.assert_array_equal(a.truncated, b.truncated)
    np.testing.assert_array_equal(a.rewards, b.rewards)


def test_d4rl_npz_with_next_observations(tmp_path, cartpole):
    path = tmp_path / "d4rl.npz"
    np.savez_compressed(path, **_d4rl(cartpole), infos=np.array([{"x": 1}] * 3, dtype=object))
    back = load_demos(path, get_task("cartpole"))
    _same(cartpole, back)
    assert back.meta["format"] == "d4rl" and "dropped_transitions" not in back.meta


def test_d4rl_hdf5(tmp_path, cartpole):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "d4rl.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in _d4rl(cartpole).items():
            f.create_dataset(k, data=v, compression="gzip")
        f.create_group("metadata").attrs["note"] = "extra groups are ignored"
    _same(cartpole, load_demos(path, get_task("cartpole")))


def test_d4rl_without_next_observations_drops_last_transitions(tmp_path, cartpole):
    path = tmp_path / "d4rl.npz"
    np.savez(path, **_d4rl(cartpole, next_obs=False))
    back = load_demos(path, get_task("cartpole"))
    assert back.meta["dropped_transitions"] == cartpole.n_episodes and "dropped" in back.meta["note"]
    np.testing.assert_array_equal(back.lengths, cartpole.lengths - 1)
    assert not back.terminated.any() and back.truncated.all()
    for orig, ep in zip(cartpole.episodes(), back.episodes(), strict=True):
        np.testing.assert_array_equal(ep.obs, orig.obs[:-1])
        np.testing.assert_array_equal(ep.actions, orig.actions[:-1])


def test_d4rl_trailing_segment_and_float_flags(tmp_path, cartpole):
    """A run of transitions after the last terminal/timeout is an episode cut at the end."""
    data = _d4rl(cartpole)
    data["timeouts"] = data["timeouts"].astype(np.float32)
    data["timeouts"][-1] = 0.0  # last episode: neither flag on its last step
    data["terminals"] = data["terminals"].astype(np.float64)
    path = tmp_path / "d4rl.npz"
    np.savez(path, **data)
    back = load_demos(path)
    _same(cartpole, back)


def test_d4rl_bad_next_observations(tmp_path, cartpole):
    data = _d4rl(cartpole)
    data["next_observations"] = data["next_observations"][:, :3]
    path = tmp_path / "d4rl.npz"
    np.savez(path, **data)
    with pytest.raises(DemoError, match="next_observations has shape"):
        load_demos(path)


def _write_hf(path, traj: Trajectories, infos: str = "{}") -> None:
    datasets = pytest.importorskip("datasets")
    eps = list(traj.episodes())
    datasets.Dataset.from_dict({
        "obs": [e.obs for e in eps], "acts": [e.actions for e in eps],
        "infos": [[infos] * e.length for e in eps], "terminal": [e.terminated for e in eps],
        "rews": [e.rewards for e in eps],
    }).save_to_disk(str(path))


def test_imitation_hf_folder_round_trip(tmp_path, cartpole):
    path = tmp_path / "rollouts"
    marker = tmp_path / "decoded"
    # a jsonpickle payload that would run code if decoded: grace never decodes infos
    evil = json.dumps({"py/reduce": [{"py/function": "pathlib.Path.touch"}, {"py/tuple": [str(marker)]}]})
    _write_hf(path, cartpole, infos=evil)
    back = load_demos(path, get_task("cartpole"))
    np.testing.assert_array_equal(cartpole.obs, back.obs)
    np.testing.assert_array_equal(cartpole.actions, back.actions)
    np.testing.assert_array_equal(cartpole.lengths, back.lengths)
    np.testing.assert_array_equal(cartpole.terminated, back.terminated)
    np.testing.assert_array_equal(cartpole.rewards, back.rewards)
    assert back.meta["format"] == "imitation-hf" and not marker.exists()


def test_imitation_hf_continuous(tmp_path):
    traj = load_demos(DEMOS / "pendulum.npz")
    _write_hf(tmp_path / "r", traj)
    back = load_demos(tmp_path / "r", get_task("pendulum"))
    np.testing.assert_array_equal(traj.actions, back.actions)
    assert back.actions.shape == traj.actions.shape


def test_hf_folder_without_datasets_names_the_extra(tmp_path, cartpole, monkeypatch):
    _write_hf(tmp_path / "r", cartpole)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DemoError, match=r"needs the `hf` extra: pip install 'grace\[hf\]'"):
        load_demos(tmp_path / "r")


def test_hf_folder_with_nan_is_refused(tmp_path, cartpole):
    bad = Trajectories(cartpole.obs.copy(), cartpole.actions, cartpole.lengths, cartpole.terminated,
                       cartpole.truncated, cartpole.rewards)
    bad.obs[3, 0] = np.nan
    _write_hf(tmp_path / "r", bad)
    with pytest.raises(DemoError, match="NaN or inf"):
        load_demos(tmp_path / "r")


def test_size_cap_is_checked_before_reading(tmp_path, cartpole):
    path = tmp_path / "d.npz"
    cartpole.save(path)
    with pytest.raises(DemoError, match="over the 0 MiB limit"):
        load_demos(path, max_mb=0.001)
    np.savez(tmp_path / "d4rl.npz", **_d4rl(cartpole))
    with pytest.raises(DemoError, match="max_demo_mb"):
        load_demos(tmp_path / "d4rl.npz", max_mb=0.001)
    with pytest.raises(DemoError, match="positive number of MiB"):
        load_demos(path, max_mb=-1)
    assert load_demos(path).n_episodes == cartpole.n_episodes  # the default cap is back after a read
