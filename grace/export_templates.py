"""The text templates of an export (grace/export.py): the calling functions every export has and
the per-target wrappers. Every export applies the reward exactly as grace trained with it: the
program's total less its terminal value's shift, the rest of the terminal value as a lump on a
terminating transition (`payment()`) and the potential's shaping `GAMMA * Phi(s_next) * (1 - terminated) -
Phi(s)` (grace/fitness/returns.py `applied_reward`)."""

EXTRAS_CLASS = '''
class _WithExtras:
    """`xp` plus the helpers grace's array namespace adds: `sigmoid` and `linalg_norm`."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def sigmoid(self, x):
        return 0.5 * (self._xp.tanh(0.5 * x) + 1.0)

    def linalg_norm(self, x, *args, **kwargs):
        return self._xp.linalg.norm(x, *args, **kwargs)
'''

CALL = '''
def reward_and_components(s, a, s_next, xp=numpy):
    """Reward of transitions (s, a, s_next): `(total, components)`.

    `s`, `s_next`: observations of shape (B, obs_dim), or (obs_dim,) for one transition;
    `a`: actions of shape (B,) (discrete) or (B, act_dim). `xp`: numpy or jax.numpy.
    `total` has the batch shape; `components` maps names to arrays (empty if none).
    """
    out = make_reward(xp)[0](Obs(s), a, Obs(s_next), PARAMS)
    total, components = out if isinstance(out, tuple) else (out, {})
    total = xp.broadcast_to(xp.asarray(total), xp.shape(s_next)[:-1])
    return total, dict(components)


def reward_fn(s, a, s_next, xp=numpy, terminated=None):
    """The reward grace trained with for transitions (s, a, s_next): the total of
    `reward_and_components` as `paid` pays it.

    `terminated` (bool, batch-shaped; None = none terminates): transitions that end their episode
    by termination, not by a time limit: the episode enters an absorbing state with Phi = 0.
    """
    return paid(reward_and_components(s, a, s_next, xp)[0], s, s_next, xp, terminated)


def paid(total, s, s_next, xp=numpy, terminated=None):
    """What grace pays for a transition whose program total is `total`: `total - shift`, plus
    `lump` when the transition terminates (`payment()`), plus the potential's shaping
    `GAMMA * Phi(s_next) * (1 - terminated) - Phi(s)` (0 without a potential)."""
    shift, lump = payment()
    out = total - shift + shaping(s, s_next, xp, terminated)
    if terminated is not None and lump:
        out = out + xp.where(xp.asarray(terminated, dtype=bool), lump, 0.0)
    return out


def payment():
    """(shift, lump) of the terminal value `PARAMS["terminal"]`: the value of the absorbing state
    an episode enters when it terminates, which pays `r_abs = terminal * (1 - GAMMA) / GAMMA` per
    step forever. Every step pays the total less `shift`, the lower of `r_abs` and
    `PARAMS["floor"]` (the lowest reward the data saw; `r_abs` without one), and a terminating
    transition pays `lump`, the value of the rest: the optimal policy of the terminal value paid
    on termination, with no payment below 0 on the data (both 0 without a terminal value)."""
    r_abs = float(PARAMS.get("terminal", 0.0)) * (1.0 - GAMMA) / GAMMA
    floor = PARAMS.get("floor")
    shift = r_abs if floor is None else min(r_abs, float(floor))
    return shift, GAMMA * (r_abs - shift) / (1.0 - GAMMA)


def potential_fn(s, xp=numpy):
    """The shaping potential Phi of states `s` (batch-shaped; 0 when the reward has none)."""
    potential = make_reward(xp)[1]
    if potential is None:
        return xp.zeros(xp.shape(s)[:-1])
    return xp.broadcast_to(xp.asarray(potential(Obs(s), PARAMS)), xp.shape(s)[:-1])


def shaping(s, s_next, xp=numpy, terminated=None):
    """Potential-based shaping `GAMMA * Phi(s_next) * (1 - terminated) - Phi(s)` (Ng, Harada &
    Russell 1999: it leaves optimal policies unchanged); 0 when the reward has no potential."""
    if make_reward(xp)[1] is None:
        return 0.0
    phi_next = potential_fn(s_next, xp)
    if terminated is not None:
        phi_next = xp.where(xp.asarray(terminated, dtype=bool), 0.0, phi_next)
    return GAMMA * phi_next - potential_fn(s, xp)
'''

_GYMNASIUM = '''
class GraceReward(gymnasium.Wrapper):
    """Replaces the env's reward with `reward_fn` of (obs, action, next_obs): the exported
    reward as `paid` pays it (the lump and Phi = 0 after a termination, not after a truncation).

    `info["env_reward"]` keeps the env's own reward; `info["grace_components"]` holds the
    reward's components as floats.
    """

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        s, s_next = numpy.asarray(self._obs), numpy.asarray(obs)
        total, components = reward_and_components(s, numpy.asarray(action), s_next)
        # not on truncation: a time limit is not an absorbing state
        total = paid(total, s, s_next, numpy, bool(terminated))
        self._obs = obs
        info = dict(info)
        info["env_reward"] = env_reward
        info["grace_components"] = {k: float(v) for k, v in components.items()}
        return obs, float(total), terminated, truncated, info
'''

_BRAX = '''
class GraceReward(Wrapper):
    """Replaces `state.reward` with `reward_fn` of (obs, action, next obs) (jax.numpy): the
    exported reward as `paid` pays it (the lump and Phi = 0 when the raw env's `done`,
    termination, is set).

    Wrap the raw env, before any training wrappers (episode, vmap, auto-reset): brax's
    `ppo.train(environment=GraceReward(env))` does that. Works under jit and vmap, batched or
    not. The env's own reward goes to `state.metrics["env_reward"]`, each component to
    `state.metrics["grace_<name>"]`.
    """

    def reset(self, rng) -> State:
        state = self.env.reset(rng)
        action = jnp.zeros(state.obs.shape[:-1] + (self.env.action_size,))
        _, components = reward_and_components(state.obs, action, state.obs, jnp)
        zero = jnp.zeros(state.obs.shape[:-1], jnp.float32)
        metrics = {"env_reward": zero, **{f"grace_{k}": zero for k in components}}
        return state.replace(metrics={**state.metrics, **metrics})

    def step(self, state: State, action) -> State:
        next_state = self.env.step(state, action)
        total, components = reward_and_components(state.obs, action, next_state.obs, jnp)
        metrics = {"env_reward": jnp.asarray(next_state.reward, jnp.float32)}
        metrics.update({f"grace_{k}": jnp.asarray(v, jnp.float32) for k, v in components.items()})
        # the raw env's done is termination (time limits come from the training wrappers around it)
        ended = next_state.done > 0.5
        total = paid(total, state.obs, next_state.obs, jnp, ended)
        reward = jnp.asarray(total, jnp.float32)
        return next_state.replace(reward=reward, metrics={**next_state.metrics, **metrics})
'''

_GYMNAX = '''
class GraceReward:
    """gymnax-style wrapper: `step` returns `reward_fn` of (obs, action, next obs): the exported
    reward as `paid` pays it (the lump and Phi = 0 on termination: done before the env's time
    limit).

    The reward is computed on the true next observation, before the auto-reset (which
    happens exactly as in `gymnax.environments.environment.Environment.step`).
    `info["env_reward"]` keeps the env's own reward, `info["grace_components"]` the components.
    Works under jit and vmap.
    """

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, key, params=None):
        return self._env.reset(key, params)

    def step(self, key, state, action, params=None):
        if params is None:
            params = self._env.default_params
        key_step, key_reset = jax.random.split(key)
        obs = self._env.get_obs(state, params)
        obs_st, state_st, env_reward, done, info = self._env.step_env(key_step, state, action, params)
        total, components = reward_and_components(obs, action, obs_st, jnp)
        terminated = done  # gymnax folds its time limit into done: that is not termination
        if hasattr(state_st, "time"):
            terminated = jnp.logical_and(done, state_st.time < params.max_steps_in_episode)
        total = paid(total, obs, obs_st, jnp, terminated)
        obs_re, state_re = self._env.reset_env(key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = dict(info)
        info["env_reward"] = env_reward
        info["grace_components"] = components
        return obs, state, jnp.asarray(total, dtype=jnp.float32), done, info
'''

_IMITATION = '''
def imitation_reward(state, action, next_state, done, /):
    """imitation's `RewardFn`: rewards of a batch of transitions as a float32 array (B,).

    `state`, `next_state`: (B, obs_dim); `action`: (B,) or (B, act_dim); `done` marks
    transitions that terminate their episode (pass terminations only: a time-limit truncation is
    not an absorbing state); it is paid as `paid` says (shift, lump and shaping).
    """
    total = reward_fn(numpy.asarray(state), numpy.asarray(action), numpy.asarray(next_state),
                      numpy, numpy.asarray(done, dtype=bool))
    return numpy.asarray(total, dtype=numpy.float32)
'''

WRAPPERS = {"gymnasium": _GYMNASIUM, "brax": _BRAX, "gymnax": _GYMNAX, "imitation": _IMITATION}
