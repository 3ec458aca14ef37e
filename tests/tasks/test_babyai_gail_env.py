"""The env GAIL trains on for the BabyAI levels (benchmarks/imitation_babyai.py) sees exactly the
observations the committed demos hold, and benchmarks/babyai.py's table reads GAIL results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minigrid")

from benchmarks.imitation_babyai import LEVELS, BabyAIGym, replay_mismatch  # noqa: E402
from grace.data.trajectories import load_demos  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ROOT / "demos"


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_committed_demos_replay_exactly_on_the_gail_env(level: str) -> None:
    assert replay_mismatch(level, DEMOS / f"{level}.npz") is None


def test_replay_catches_a_changed_action_and_a_changed_observation(tmp_path: Path) -> None:
    level = "BabyAI-GoToRedBall-v0"
    demo = load_demos(DEMOS / f"{level}.npz")
    acted = load_demos(DEMOS / f"{level}.npz")
    acted.actions[0] = 0 if acted.actions[0] != 0 else 1  # turn instead of the bot's first action
    acted.save(tmp_path / "acted.npz")
    assert (msg := replay_mismatch(level, tmp_path / "acted.npz")) and msg.startswith("episode 0")
    seen = load_demos(DEMOS / f"{level}.npz")
    seen.obs[len(demo.obs) - 1, 150] += 1  # the last episode's final mission colour
    seen.save(tmp_path / "seen.npz")
    assert replay_mismatch(level, tmp_path / "seen.npz") == (
        f"episode 7 step {demo.lengths[-1]}: observation column 150 recorded 1.0, replayed 0.0")
    del seen.meta["seed"]
    seen.save(tmp_path / "unseeded.npz")
    assert "no reset seed" in str(replay_mismatch(level, tmp_path / "unseeded.npz"))


def test_gail_env_is_a_gymnasium_env_with_the_155_vector() -> None:
    import gymnasium as gym

    env = BabyAIGym("BabyAI-OpenTwoDoors-v0")
    assert isinstance(env, gym.Env) and env.observation_space.shape == (155,) and env.action_space.n == 7
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    obs2, rew, terminated, truncated, _ = env.step(2)
    assert obs2.shape == (155,) and rew == 0.0 and not (terminated or truncated)
    with pytest.raises(ValueError, match="unknown BabyAI level"):
        BabyAIGym("BabyAI-Nope-v0")


def _table(results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "babyai.py"), "--table-only", "--results",
                           str(results), "--levels", "BabyAI-GoToRedBall-v0,BabyAI-OpenDoor-v0", "--steps", "20000",
                           "--seeds", "2", *extra], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_table_reads_grace_rows_without_gail_and_gail_rows_without_grace(tmp_path: Path) -> None:
    cache = tmp_path / "babyai"
    red, door = cache / "BabyAI-GoToRedBall-v0", cache / "BabyAI-OpenDoor-v0"
    red.mkdir(parents=True)
    door.mkdir(parents=True)
    winner = {"program_id": "p1", "fitness": 0.9, "heldout": 0.8, "size": 5, "metrics": {}, "source": "x = 1"}
    (red / "evolve.json").write_text(json.dumps({"wall_s": 10.0, "winner": winner}))
    method = {"ok": True, "success": 0.75, "success_per_seed": [0.5, 1.0], "returns": [0.4, 0.6]}
    (red / "train.json").write_text(json.dumps({"steps": 20000, "seeds": 2, "wall_s": 5.0,
                                                "methods": {"grace": method, "true_reward": method}}))
    runs = [{"seed": s, "true_return": 0.1, "success": 0.25 * (s + 1), "train_s": 9.0, "env_steps": 20480}
            for s in range(2)]
    (door / "gail-2000.json").write_text(json.dumps({"runs": runs, "steps": 20000, "success_mean": 0.375}))
    (door / "gail-8.json").write_text(json.dumps({"runs": runs[:1], "steps": 4096, "success_mean": 0.25}))
    out = _table(tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {line.split(" | ")[0]: line.split(" | ") for line in (tmp_path / "babyai.md").read_text().splitlines()
            if line.startswith("| BabyAI")}
    assert rows["| BabyAI-GoToRedBall-v0"][1:5] == ["**0.750 ± 0.250**", "0.750 ± 0.250", "not run", "not run"]
    assert rows["| BabyAI-OpenDoor-v0"][1:5] == ["not run", "not run", "0.250 (4,096 steps, 1 seeds)", "0.375 ± 0.125"]
    saved = json.loads((tmp_path / "babyai.json").read_text())["rows"]
    assert [r["level"] for r in saved] == ["BabyAI-GoToRedBall-v0", "BabyAI-OpenDoor-v0"]
    assert saved[1]["gail"]["2000"]["success_per_seed"] == [0.25, 0.5]
    bad = _table(tmp_path, "--gail-demos", "8,x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--gail-demos" in bad.stderr
    assert np.isclose(saved[0]["methods"]["grace"]["success"], 0.75)
