"""PPO in the loop's noise rule (grace/search/ppo_verdict.py): a higher expert-likeness wins only
beyond the seed noise; within it the leader and its offline-better rival train on more seeds and the
more reliably expert-like wins (higher mean minus two standard errors), the better offline rank on a
tie."""

from __future__ import annotations

import pytest

import grace
from grace.config import EvolveConfig
from grace.search import ppo_select
from grace.search.archive import Archive
from grace.search.ppo_verdict import beats, leader_and_rival, lower_bound, settle, stderr
from grace.types import PPOResult
from tests.conftest import DEMOS, run_cli


def test_a_difference_counts_only_beyond_two_standard_errors() -> None:
    assert beats([0.90, 0.91], [0.50, 0.52])
    assert not beats([0.545, 0.530], [0.532, 0.540])  # inverted pendulum's 0.545 vs 0.532, seed-sized
    assert not beats([0.6, 0.2], [0.35, 0.35])  # a higher mean from one lucky seed
    assert beats([0.6], [0.5]) and not beats([0.5], [0.5])  # one seed: no spread, any gain counts
    assert stderr([0.5]) == 0.0 and stderr([0.4, 0.6]) == pytest.approx(0.1)


def _cand(rank: int, seeds: list[float] | None) -> dict:
    return {"row": 100 + rank, "offline_rank": rank, "likeness_seeds": seeds}


def test_the_rival_is_the_best_ranked_candidate_the_leader_does_not_beat() -> None:
    scored = [_cand(0, [0.50, 0.60]), _cand(1, [0.20, 0.22]), _cand(2, None), _cand(3, [0.52, 0.62])]
    leader, rival = leader_and_rival(scored)
    assert leader is scored[3] and rival is scored[0]  # 0.57 vs 0.55 with 0.05 spreads: noise
    clear = [_cand(0, [0.50, 0.51]), _cand(1, [0.90, 0.91])]
    assert leader_and_rival(clear) == (clear[1], None)
    assert leader_and_rival([_cand(0, None)]) == (None, None)
    tie = [_cand(0, [0.5]), _cand(1, [0.5])]
    assert leader_and_rival(tie) == (tie[0], None)  # ties keep the offline order
    assert settle(scored[3], scored[0])[0] is scored[3]  # within noise, same spread, higher mean
    scored[3]["likeness_seeds"] += [0.9, 0.92, 0.91, 0.9]
    assert settle(scored[3], scored[0]) == (scored[3], "the most expert-like policy")


def test_within_noise_the_more_reliably_expert_like_wins() -> None:
    # fixed-horizon CartPole (quality10): the offline-better rival had a failing seed; the leader none
    rival = _cand(0, [0.913, 0.914, 0.618, 0.969, 0.920, 0.756])
    leader = _cand(1, [0.884, 0.964, 0.787, 0.967, 0.960, 0.863])
    assert not beats(leader["likeness_seeds"], rival["likeness_seeds"])
    assert lower_bound(leader["likeness_seeds"]) > lower_bound(rival["likeness_seeds"])
    assert settle(leader, rival)[0] is leader
    # a higher mean from seeds that imitate and seeds that fail loses to a steady rival
    steady, lucky = _cand(0, [0.50, 0.52, 0.51, 0.50]), _cand(1, [0.95, 0.10, 0.90, 0.20])
    assert settle(lucky, steady)[0] is steady
    same = _cand(1, [0.50, 0.52, 0.51, 0.50])
    assert settle(same, steady)[0] is steady  # a tie: the better offline rank
    assert lower_bound([0.4, 0.6]) == pytest.approx(0.3) and lower_bound([0.7]) == 0.7


def test_a_reward_that_never_teaches_is_not_reliable() -> None:
    """BabyAI OpenTwoDoors (babyai7): the offline-better rival's policies scored 0 on six seeds, the
    leader's imitated on one (0.19; the floor: 0.05 of the expert's 0.92). The rival's lower bound
    (0) is higher, yet its reward never teaches: the leader wins; without a floor, as before."""
    rival, leader = _cand(0, [0.0] * 6), _cand(3, [0.009, 0.193, 0.0, 0.0, 0.0, 0.0])
    assert not beats(leader["likeness_seeds"], rival["likeness_seeds"])
    assert lower_bound(rival["likeness_seeds"]) > lower_bound(leader["likeness_seeds"])
    assert settle(leader, rival, 0.046) == (leader, "the only one of the two whose policies imitated on some seed")
    assert settle(leader, rival)[0] is rival
    assert settle(rival, leader, 0.046)[0] is leader  # whichever side it is on
    both = _cand(0, [0.05, 0.06, 0.05, 0.06])
    assert settle(leader, both, 0.046)[0] is both  # both imitated somewhere: the lower bound decides


SMALL = {"search.generations": 1, "search.population": 4, "search.islands": 1, "sandbox.workers": 2,
         "ppo.select_top": 3, "ppo.select_dense": 0, "ppo.select_heldout": 0, "ppo.seeds": 2,
         "fit.shaping": False, "ppo.select_terms": 0, "report": False}


@pytest.mark.ppo_select
@pytest.mark.parametrize("holds", [True, False])
def test_a_lead_within_noise_is_confirmed_on_more_seeds(tmp_path, monkeypatch, holds: bool) -> None:
    """The last candidate leads the first within noise; the two train on `ppo.select_confirm` more
    seeds; the lead stands if it then holds, and loses to the steadier rival when its new seeds
    swing (PPO faked: the per-seed likeness is the input)."""
    calls: list[tuple[int, int | None]] = []

    async def fake(task, cfg, sources, data, seed, seeds=None):
        calls.append((len(sources), seeds))
        if seeds is None:  # the first run: the last candidate leads within noise
            per = [[0.50, 0.60]] + [[0.20, 0.22]] * (len(sources) - 2) + [[0.52, 0.62]]
        else:  # the confirmation: leader, rival
            per = ([[0.90, 0.91, 0.92, 0.90], [0.50, 0.52, 0.51, 0.50]] if holds else
                   [[0.95, 0.05, 0.90, 0.10], [0.55, 0.60, 0.50, 0.65]])
        return [PPOResult(true_return_mean=0.0, irl_score=sum(p) / len(p), irl_per_seed=p, env_steps=10)
                for p in per], 0.5

    monkeypatch.setattr(ppo_select, "enabled", lambda cfg, task: True)
    monkeypatch.setattr(ppo_select, "train_and_score", fake)
    run = tmp_path / "r"
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run)).override(SMALL)
    cfg = cfg.override({"ppo": {"select_payment": False}})  # only the selection's PPO runs are counted
    res = grace.evolve(cfg, progress=False)
    rec = Archive(run / "archive.sqlite", create=False).get_meta("ppo_select_r0")
    assert calls == [(3, None), (2, 4)]  # the top 3 on 2 seeds, then the pair on 4 more
    first, last = rec["candidates"][0], rec["candidates"][-1]
    assert rec["confirm"]["rows"] == [last["row"], first["row"]] and len(last["likeness_seeds"]) == 6
    assert rec["winner"] == (last if holds else first)["row"] and res.best.id == rec["winner"]
    assert ("the most expert-like policy, after 4 more seeds" if holds else
            "at least as reliably expert-like, so the better offline rank, after 4 more seeds") in rec["why"]
    assert rec["env_steps"] == 3 * 10 * 2 + 2 * 10 * 4
    assert rec["why"] in (run / "best_reward.py").read_text().replace("\n  ", " ")
    shown = run_cli("show", str(run), "--no-code")  # the per-seed spread and the reason, in the table
    assert shown.returncode == 0 and "(6 seeds)" in shown.stdout and "chosen:" in shown.stdout
