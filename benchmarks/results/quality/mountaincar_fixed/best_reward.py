"""Reward: position near 0.525.

grace provenance:
  task: mountaincar_fixed
  demos: demos/mountaincar_fixed.npz (sha256 6171a723c70c)
  fitness: 0.9990 train, 0.9992 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 1.000 train, 1.000 held-out; AUC 1.000 train, 1.000 held-out
  run: runs/quality/mountaincar_fixed round 0 generation 5 slot 0
  program: 4b45195df035 (mutate by offline)
  lineage: 4b45195df035 <- 410d5619a7f4 <- 47aff081b24d <- c8a4e88ee220
  grace: 0.1.0
"""

PARAMS = {"w_position": 8.2, "c_position": 0.525, "s_position": 0.03}


def reward(s, a, s_next, p):
    position = p["w_position"] * xp.exp(-(((s_next.position - p["c_position"]) / p["s_position"]) ** 2))
    return position, {"position": position}
