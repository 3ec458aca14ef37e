"""Reward: position above -0.309.

grace provenance:
  task: mountaincar
  demos: demos/mountaincar.npz (sha256 f8bc4bc60601)
  fitness: 0.9991 train, 0.9991 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 1.000 train, 1.000 held-out; AUC 1.000 train, 1.000 held-out
  run: runs/quality/mountaincar round 0 generation 0 slot 19
  program: 64bcf38a1165 (init by offline)
  lineage: 64bcf38a1165
  grace: 0.1.0
"""

PARAMS = {"w_position": 1.0, "t_position": 0.5021}


def reward(s, a, s_next, p):
    position = p["w_position"] * xp.where(s_next.position > p["t_position"], 1.0, 0.0)
    return position, {"position": position}
