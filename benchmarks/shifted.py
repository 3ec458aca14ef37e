"""How a terminal value is paid to PPO: as a lump on the terminating transition, or as a shift.

The quality13 CartPole winner (benchmarks/results/quality13/cartpole/evolve-full.json) holds a
learned terminal value of -699.5 ("falling is the worst state forever"; most of its states score
below 0). PPO trains, in one batch of 10 seeds x 200,000 steps with the task's settings, on
(1) the winner as grace pays it, (2) the same reward shifted by hand (+7.0657, the absorbing
state's per-step reward taken off, terminal 0) and (3) the true reward.

Run at 24828d0, grace paid (1) as the lump (the terminal value on termination, symlog per step
and on the absorbing steps), so (1) and (2) differed; from the commit after it grace pays every
terminal value as the shift, so (1) and (2) pay the same and this script checks that they train
alike. Writes benchmarks/results/shifted.md (the 24828d0 run is kept there, beside this one).

`--case opentwodoors`: the babyai6 OpenTwoDoors winner (a 0/1 indicator with terminal value 99:
finishing is "as good as the best state forever"), which trained every seed to success when grace
paid its terminal value as the lump (babyai6, 24828d0), trained as grace pays it now (shifted: -1
on every step the indicator is off, 0 once finished) beside the true reward, 5 seeds x 300,000
steps as benchmarks/babyai.py trains it: does the shift break that reward, or did the search
after the shift (babyai7/8) just not find it?
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "shifted.md"


def opentwodoors() -> None:
    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.types import PPOJob

    level = "BabyAI-OpenTwoDoors-v0"
    record = json.loads((ROOT / f"benchmarks/results/babyai6/babyai/{level}/evolve.json").read_text())
    t0 = time.time()
    res = run_ppo(level, PPOJob((record["winner"]["source"], TRUE_REWARD), 300_000, 5, 0))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = [f"| {name} | {r.success_rate:.2f} | {', '.join(f'{x:.2f}' for x in r.success_per_seed)} |"
            for name, r in zip(("babyai6's winner as grace pays it (shifted)", "true reward"), res, strict=True)]
    text = OUT.read_text()
    OUT.write_text(text.rstrip() + f"\n\n## OpenTwoDoors, run at {commit} ({time.time() - t0:.0f} s)\n\n"
                   "babyai6's winner trained every seed to success (1.00) when grace paid its terminal value "
                   "(99) as the lump on the terminating transition (babyai6, 24828d0, the same steps and seeds). "
                   "Success rate over 8 episodes per seed, 5 seeds x 300,000 steps.\n\n"
                   "| reward | success | per seed |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    print(OUT.read_text())


def main() -> None:
    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.types import PPOJob

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=("cartpole", "opentwodoors"), default="cartpole")
    if ap.parse_args().case == "opentwodoors":
        opentwodoors()
        return
    record = json.loads((ROOT / "benchmarks/results/quality13/cartpole/evolve-full.json").read_text())
    winner = record["winner"]["source"]
    shifted = winner.replace('"terminal": -699.5,', '"terminal": 0.0,').replace(
        "return pole_angular_velocity + pole_angle, {", "return pole_angular_velocity + pole_angle + 7.0657, {")
    assert shifted != winner, "the winner's source changed: update the hand shift"
    t0 = time.time()
    res = run_ppo("cartpole", PPOJob((winner, shifted, TRUE_REWARD), 200_000, 10, 0))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = [f"| {name} | {sum(x >= 500 for x in r.true_returns)} / 10 | "
            f"{', '.join(f'{x:.0f}' for x in r.true_returns)} |"
            for name, r in zip(("the winner as grace pays it", "shifted by hand (+7.0657, terminal 0)", "true reward"), res, strict=True)]
    text = OUT.read_text() if OUT.exists() else ""
    head = text.split("\n## Run at ")[0] if text else HEADER
    runs = ["## Run at " + p for p in text.split("\n## Run at ")[1:]]
    runs.append(f"## Run at {commit} ({time.time() - t0:.0f} s)\n\n| reward | seeds at 500 | final return per seed |\n"
                "|---|---|---|\n" + "\n".join(rows) + "\n")
    OUT.write_text(head.rstrip() + "\n\n" + "\n".join(r.rstrip() + "\n" for r in runs))
    print(OUT.read_text())


HEADER = """# Paying a terminal value to PPO: a lump on termination, or a shift on every step

`python benchmarks/shifted.py`: the quality13 CartPole winner (terminal value -699.5) trained by
PPO with the task's settings (symlog per step), 10 seeds x 200,000 steps, in one batch with the
same reward shifted by hand and the true reward. Final return per seed (500 = balanced to the
time limit).
"""


if __name__ == "__main__":
    main()
