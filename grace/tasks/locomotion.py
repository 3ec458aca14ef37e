"""MuJoCo-style locomotion on Brax (brax 0.14, generalized backend): hopper, walker2d, ant, humanoid.

Observation schemas follow each env's `_get_obs` (brax/envs/<name>.py) with names from its MJCF
(brax/envs/assets/<name>.xml): positions first (the torso's x (and y) are excluded, as in brax),
then velocities (hopper and walker2d clip them to +-10). Brax's ant is built without contact forces
(`use_contact_forces=False`), so no schema has them. The reference rewards (grace/tasks/rewards/)
are brax's reward terms in grace's contract; brax's forward term is the torso's (humanoid: the
centre of mass's) displacement over the step divided by dt, which the observation does not carry,
so they use the mean of the velocities observed at `s` and `s_next` instead (tests/tasks/
test_locomotion.py bounds the difference; every other term is exact).

PPO settings (`Task.ppo`, rejax field names) take brax's published PPO rows (notebooks/training.ipynb,
`train_fn` for ant and humanoid: discount, learning rate, entropy cost, epochs) at a batch size that
fits grace's PPO budgets (`BRAX_BATCH` has brax's own geometry, mapped so that an update sees the
same env steps, minibatch size and epochs: num_envs = brax num_envs, num_steps = unroll_length *
batch_size * num_minibatches / num_envs). Brax publishes SAC, not PPO, for hopper and walker2d;
theirs take the ant row with the discount of brax's hopper / walker2d configs (0.997). brax's
reward_scaling is not mapped (grace normalises rewards).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from grace.tasks import brax_expert
from grace.tasks.spec import ActionSpace, Derived, Field, ObsSchema, Task

REWARDS = Path(__file__).parent / "rewards"
MAX_STEPS = 1000


def brax_gym(name: str, max_steps: int):
    """A numpy (gymnasium) Brax env: demos, rollouts, the probe."""
    from grace.tasks.brax_env import BraxGymEnv

    return BraxGymEnv(name, max_steps=max_steps)


def brax_jax(name: str, max_steps: int):
    """A Brax env behind the gymnax API: PPO."""
    from grace.tasks import jax_envs

    return jax_envs.make_brax(name, max_steps=max_steps)


def _return_at_least(threshold: float, ret: float, terminated: bool, obs: Any) -> bool:
    return bool(ret >= threshold)


def locomotion_success(alive_per_step: float, forward_weight: float = 1.0, speed: float = 0.5):
    """Success: the return of surviving a whole episode while averaging `speed` m/s forward
    (the alive bonus of every step plus `forward_weight * speed` per step). A partial, so a Task
    built from a built-in one stays picklable."""
    return partial(_return_at_least, MAX_STEPS * (alive_per_step + forward_weight * speed))


# -- observation layouts -------------------------------------------------------------------------------
HOPPER_SCHEMA = ObsSchema(
    (
        Field("torso_height", unit="m", doc="height of the torso above the ground (about 1.25 when standing)"),
        Field("torso_angle", unit="rad", doc="pitch of the torso (rooty), 0 is upright"),
        Field("joint_angles", size=3, unit="rad", doc="thigh, leg and foot joint angles"),
        Field("forward_velocity", unit="m/s", doc="torso velocity along x (forward is positive; clipped to +-10)"),
        Field("vertical_velocity", unit="m/s", doc="torso velocity along z"),
        Field("torso_angular_velocity", unit="rad/s", doc="pitch rate of the torso"),
        Field("joint_velocities", size=3, unit="rad/s", doc="thigh, leg and foot joint velocities"),
    )
)
HOPPER_DESC = (
    "A one-legged planar robot (torso, thigh, leg, foot; Brax hopper). Three continuous joint "
    "torques in [-1, 1]. The expert hops forward as fast as it can without falling: the episode "
    "ends if the torso drops below 0.7 m or tilts more than 0.2 rad."
)
WALKER_SCHEMA = ObsSchema(
    (
        Field("torso_height", unit="m", doc="height of the torso above the ground (about 1.25 when standing)"),
        Field("torso_angle", unit="rad", doc="pitch of the torso (rooty), 0 is upright"),
        Field("right_joint_angles", size=3, unit="rad", doc="right thigh, leg and foot joint angles"),
        Field("left_joint_angles", size=3, unit="rad", doc="left thigh, leg and foot joint angles"),
        Field("forward_velocity", unit="m/s", doc="torso velocity along x (forward is positive; clipped to +-10)"),
        Field("vertical_velocity", unit="m/s", doc="torso velocity along z"),
        Field("torso_angular_velocity", unit="rad/s", doc="pitch rate of the torso"),
        Field("right_joint_velocities", size=3, unit="rad/s", doc="right thigh, leg and foot joint velocities"),
        Field("left_joint_velocities", size=3, unit="rad/s", doc="left thigh, leg and foot joint velocities"),
    )
)
WALKER_DESC = (
    "A two-legged planar robot (torso; right and left thigh, leg and foot; Brax walker2d). Six "
    "continuous joint torques in [-1, 1]. The expert walks forward as fast as it can without "
    "falling: the episode ends if the torso leaves the height range 0.8 to 2.0 m or tilts more "
    "than 1 rad."
)


def _up_z(raw: Any, q: int) -> Any:
    """z component of the torso's up axis from its quaternion (w, x, y, z) at columns q..q+3."""
    return 1.0 - 2.0 * (raw[..., q + 1] * raw[..., q + 1] + raw[..., q + 2] * raw[..., q + 2])


def ant_torso_up(raw: Any) -> Any:
    return _up_z(raw, 1)


ANT_SCHEMA = ObsSchema(
    (
        Field("torso_height", unit="m", doc="height of the torso's centre above the ground (0.75 at the start)"),
        Field("torso_orientation", size=4, doc="torso orientation quaternion (w, x, y, z); (1, 0, 0, 0) is level, facing +x"),
        Field("leg_joint_angles", size=8, unit="rad",
              doc="hip and ankle angles of each leg: hip_1, ankle_1 (front left), hip_2, ankle_2 (front right), "
                  "hip_3, ankle_3 (back left), hip_4, ankle_4 (back right)"),
        Field("forward_velocity", unit="m/s", doc="torso velocity along x (forward is positive)"),
        Field("lateral_velocity", unit="m/s", doc="torso velocity along y"),
        Field("vertical_velocity", unit="m/s", doc="torso velocity along z"),
        Field("torso_angular_velocity", size=3, unit="rad/s", doc="torso angular velocity (x, y, z)"),
        Field("leg_joint_velocities", size=8, unit="rad/s", doc="hip and ankle angular velocities, in the order of leg_joint_angles"),
    ),
    derived=(Derived("torso_up", ant_torso_up, "z component of the torso's up axis: 1 level, 0 on its side, -1 upside down"),),
)
ANT_DESC = (
    "A four-legged robot (a spherical torso, each leg a hip and an ankle joint; Brax ant) on a flat "
    "floor. Eight continuous joint torques in [-1, 1]. The expert runs forward (+x) as fast as it "
    "can: the episode ends if the torso's centre leaves the height range 0.2 to 1.0 m."
)

HUMANOID_LINKS = ("torso", "lwaist", "pelvis", "right_thigh", "right_shin", "left_thigh", "left_shin",
                  "right_upper_arm", "right_lower_arm", "left_upper_arm", "left_lower_arm")
_LINK_VEL = 22 + 23 + 10 * len(HUMANOID_LINKS)
"""Column of link_com_velocity in the humanoid observation."""


def humanoid_com_forward_velocity(raw: Any) -> Any:
    out = raw[..., _LINK_VEL]
    for i in range(1, len(HUMANOID_LINKS)):
        out = out + raw[..., _LINK_VEL + 6 * i]
    return out


def humanoid_torso_up(raw: Any) -> Any:
    return _up_z(raw, 1)


_LINKS = ", ".join(HUMANOID_LINKS)
HUMANOID_SCHEMA = ObsSchema(
    (
        Field("torso_height", unit="m", doc="height of the torso above the ground (1.4 at the start)"),
        Field("torso_orientation", size=4, doc="torso orientation quaternion (w, x, y, z); (1, 0, 0, 0) is upright, facing +x"),
        Field("abdomen_angles", size=3, unit="rad", doc="abdomen_z, abdomen_y, abdomen_x joint angles"),
        Field("right_leg_angles", size=4, unit="rad", doc="right_hip_x, right_hip_z, right_hip_y, right_knee"),
        Field("left_leg_angles", size=4, unit="rad", doc="left_hip_x, left_hip_z, left_hip_y, left_knee"),
        Field("right_arm_angles", size=3, unit="rad", doc="right_shoulder1, right_shoulder2, right_elbow"),
        Field("left_arm_angles", size=3, unit="rad", doc="left_shoulder1, left_shoulder2, left_elbow"),
        Field("torso_velocity", size=3, unit="m/s", doc="torso linear velocity (x forward, y, z)"),
        Field("torso_angular_velocity", size=3, unit="rad/s", doc="torso angular velocity"),
        Field("abdomen_velocities", size=3, unit="rad/s", doc="abdomen joint velocities"),
        Field("right_leg_velocities", size=4, unit="rad/s", doc="right hip and knee joint velocities"),
        Field("left_leg_velocities", size=4, unit="rad/s", doc="left hip and knee joint velocities"),
        Field("right_arm_velocities", size=3, unit="rad/s", doc="right shoulder and elbow joint velocities"),
        Field("left_arm_velocities", size=3, unit="rad/s", doc="left shoulder and elbow joint velocities"),
        Field("link_inertia", size=10 * len(HUMANOID_LINKS),
              doc=f"per link ({_LINKS}): its 3x3 inertia about the whole body's centre of mass (9, row-major), then its mass"),
        Field("link_com_velocity", size=6 * len(HUMANOID_LINKS),
              doc=f"per link ({_LINKS}): linear velocity of its centre of mass times its share of the total mass (3), "
                  "then its angular velocity (3); the linear parts sum to the centre of mass velocity"),
        Field("actuator_forces", size=23, doc="generalised forces the motors applied in the last step, per degree of "
                                              "freedom (6 free-joint entries, always 0, then the 17 joints)"),
    ),
    derived=(
        Derived("com_forward_velocity", humanoid_com_forward_velocity, "velocity of the whole body's centre of mass along x", "m/s"),
        Derived("torso_up", humanoid_torso_up, "z component of the torso's up axis: 1 upright, 0 lying down"),
    ),
)
HUMANOID_DESC = (
    "A 3-D humanoid (torso, abdomen, pelvis, two legs with hip and knee, two arms with shoulder and "
    "elbow; Brax humanoid). Seventeen continuous joint torques in [-1, 1]. The expert runs forward "
    "(+x) as fast as it can without falling: the episode ends if the torso leaves the height range "
    "1.0 to 2.0 m."
)


def _task(name: str, desc: str, schema: ObsSchema, act_dim: int, true_doc: str, success: Any,
          ppo: dict[str, Any], act_doc: str = "joint torques") -> Task:
    return Task(
        name=name, description=desc, schema=schema,
        action=ActionSpace("continuous", shape=(act_dim,), low=-1.0, high=1.0, doc=act_doc),
        kind="keepalive", make_env=partial(brax_gym, name, MAX_STEPS),
        make_jax_env=partial(brax_jax, name, MAX_STEPS), jax_backend="brax", max_steps=MAX_STEPS,
        expert=partial(brax_expert.load_expert, name), expert_doc=brax_expert.expert_doc(name),
        true_reward_doc=true_doc, success=success, reference_reward=REWARDS / f"{name}.py", ppo=ppo,
    )


# brax notebooks/training.ipynb `train_fn['ant']`: num_envs 4096, batch_size 2048, num_minibatches 32,
# unroll_length 5, num_updates_per_batch 4, discounting 0.97, learning_rate 3e-4, entropy_cost 1e-2.
# In rejax's terms (same env steps per update, per minibatch, epochs): BRAX_BATCH["ant"].
BRAX_BATCH = {
    "ant": {"num_envs": 4096, "num_steps": 80, "num_minibatches": 32, "num_epochs": 4},
    # train_fn['humanoid']: num_envs 2048, batch_size 1024, num_minibatches 32, unroll_length 10,
    # num_updates_per_batch 8, discounting 0.97, learning_rate 3e-4, entropy_cost 1e-3.
    "humanoid": {"num_envs": 2048, "num_steps": 160, "num_minibatches": 32, "num_epochs": 8},
}
"""brax's batch geometry: 327,680 env steps per update, made for its 50M-step budgets (a GPU). A
task's own `ppo` keeps brax's discount, learning rate, entropy cost and epochs but updates every
2,048 env steps (64 envs x 32 steps, 4 minibatches), so grace's 200k-step PPO runs (PPO in the loop,
`ppo.steps`) make ~100 updates instead of none; benchmarks/locomotion.py --brax-batch uses these."""
BRAX_BATCH["hopper"] = BRAX_BATCH["walker2d"] = BRAX_BATCH["ant"]
_GRACE_BATCH = {"num_envs": 64, "num_steps": 32, "num_minibatches": 4}
ANT_PPO = dict(_GRACE_BATCH, num_epochs=4, gamma=0.97, learning_rate=3e-4, ent_coef=1e-2)
HUMANOID_PPO = dict(_GRACE_BATCH, num_epochs=8, gamma=0.97, learning_rate=3e-4, ent_coef=1e-3)
# brax publishes SAC for hopper and walker2d (discounting 0.997 in both): the ant row with that discount.
PLANAR_PPO = dict(ANT_PPO, gamma=0.997)


def locomotion_tasks() -> dict[str, Task]:
    tasks = [
        _task("hopper", HOPPER_DESC, HOPPER_SCHEMA, 3,
              "forward velocity (torso displacement / dt) + 1 per step alive - 0.001 |a|^2",
              locomotion_success(1.0), PLANAR_PPO, "thigh, leg and foot joint torques"),
        _task("walker2d", WALKER_DESC, WALKER_SCHEMA, 6,
              "forward velocity (torso displacement / dt) + 1 per step alive - 0.001 |a|^2",
              locomotion_success(1.0), PLANAR_PPO,
              "right thigh, leg, foot, then left thigh, leg, foot joint torques"),
        _task("ant", ANT_DESC, ANT_SCHEMA, 8,
              "forward velocity (torso displacement / dt) + 1 per step alive - 0.5 |a|^2",
              locomotion_success(1.0), ANT_PPO, "torques of hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3 (the MJCF's motor order)"),
        _task("humanoid", HUMANOID_DESC, HUMANOID_SCHEMA, 17,
              "1.25 x forward velocity of the centre of mass + 5 per step alive - 0.1 |0.4 a|^2",
              locomotion_success(5.0, 1.25), HUMANOID_PPO,
              "abdomen, hip, knee, shoulder and elbow torques (scaled to the motors' +-0.4 range)"),
    ]
    return {t.name: t for t in tasks}
