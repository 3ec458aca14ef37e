"""Demo file layouts -> one record of checked arrays (`DemoArrays`), detected automatically.

- grace npz:       obs, actions, lengths, terminated, truncated, [rewards, meta_json]
- imitation npz:   obs, acts, indices, [terminal, rews]  (imitation's old `save` layout)
- D4RL flat:       observations, actions, rewards, terminals, timeouts, [next_observations]
                   in an .npz or an HDF5 file; episodes end at terminals | timeouts (and at the
                   end of the arrays)
- imitation HF:    the folder imitation's `serialize.save` writes (`datasets.save_to_disk`:
                   columns obs, acts, infos, terminal, [rews]); needs the `hf` extra. `infos` are
                   jsonpickled and never decoded (decoding can run code).

Every layout goes through `check_arrays`: dtypes, shapes, finiteness, episode lengths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grace.data.demo_files import (
    DemoError,
    as_str,
    folder_bytes,
    read_hdf5,
    read_npz,
    sniff,
)

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
USED_KEYS = frozenset({"obs", "actions", "lengths", "terminated", "truncated", "rewards", "meta_json",
                       "acts", "indices", "terminal", "rews", *D4RL_KEYS})


@dataclass
class DemoArrays:
    """Episodes concatenated, as `Trajectories` holds them (see grace.data.trajectories)."""

    obs: np.ndarray
    actions: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    rewards: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_demo_file(path: Path) -> DemoArrays:
    """Read any supported layout from a file or folder; the result passed `check_arrays`."""
    if not path.exists():
        raise DemoError(f"demo file {path} does not exist")
    if path.is_dir():
        arrays = _from_hf_folder(path)
    else:
        kind = sniff(path)
        if kind == "npz":
            data = read_npz(path, USED_KEYS)
        elif kind == "hdf5":
            data = read_hdf5(path, D4RL_KEYS)
            if not {"observations", "actions"} <= set(data):
                raise DemoError(f"{path}: HDF5 file without D4RL 'observations' and 'actions'")
        else:
            raise DemoError(f"{path} is not a readable .npz dataset (not a zip, HDF5 or folder)")
        try:
            arrays = _from_npz(path, data)
        except DemoError:
            raise
        except (TypeError, IndexError, ValueError) as exc:  # 0-d or mismatched arrays
            raise DemoError(f"{path}: malformed arrays ({' '.join(str(exc).split())[:200]})") from None
    arrays.meta.setdefault("path", str(path))
    return check_arrays(arrays, str(path))


def _from_npz(path: Path, data: dict[str, np.ndarray]) -> DemoArrays:
    keys = set(data)
    if {"obs", "actions", "lengths"} <= keys:
        missing = [k for k in ("terminated", "truncated") if k not in keys]
        if missing:
            raise DemoError(f"{path}: grace demo file lacks {', '.join(missing)}")
        return DemoArrays(
            obs=data["obs"], actions=data["actions"], lengths=data["lengths"],
            terminated=data["terminated"], truncated=data["truncated"], rewards=data.get("rewards"),
            meta=_meta(path, data["meta_json"]) if "meta_json" in keys else {},
        )
    if {"obs", "acts", "indices"} <= keys:
        return _from_imitation(path, data)
    if {"observations", "actions"} <= keys:
        return _from_d4rl(path, data)
    shown = ", ".join(sorted(keys)) or "none"
    raise DemoError(f"{path}: unknown dataset layout (keys: {shown})")


def _meta(path: Path, raw: np.ndarray) -> dict[str, Any]:
    try:
        meta = json.loads(as_str(raw))
    except (json.JSONDecodeError, ValueError):
        raise DemoError(f"{path}: meta_json is not valid JSON") from None
    if not isinstance(meta, dict):
        raise DemoError(f"{path}: meta_json is not a JSON object")
    return meta


def _from_imitation(path: Path, data: dict[str, np.ndarray]) -> DemoArrays:
    acts, indices = data["acts"], data["indices"]
    _need_int(indices, f"{path}: indices", ndim=1)
    n_act = len(acts)
    if len(indices) and (np.any(np.diff(indices) < 0) or indices.min() < 0 or indices.max() > n_act):
        raise DemoError(f"{path}: indices must be sorted episode boundaries within 0..{n_act}")
    lengths = np.diff(np.concatenate([[0], indices.astype(np.int64), [n_act]]))
    n_eps = len(lengths)
    terminal = data["terminal"] if "terminal" in data else np.ones(n_eps, bool)
    if terminal.shape != (n_eps,):
        raise DemoError(f"{path}: terminal needs one flag per episode ({n_eps}), got shape {terminal.shape}")
    terminal = terminal.astype(bool)
    return DemoArrays(obs=data["obs"], actions=acts, lengths=lengths, terminated=terminal,
                      truncated=~terminal, rewards=data.get("rews"), meta={"format": "imitation"})


def _from_d4rl(path: Path, data: dict[str, np.ndarray]) -> DemoArrays:
    obs, acts = data["observations"], data["actions"]
    if acts.ndim == 0 or obs.ndim == 0:
        raise DemoError(f"{path}: observations and actions must be arrays with one row per transition")
    n = len(acts)
    if n == 0:
        raise DemoError(f"{path}: no transitions (empty D4RL arrays)")
    if len(obs) != n:
        raise DemoError(f"{path}: observations has {len(obs)} rows, actions {n}; "
                        "D4RL arrays need one row per transition")
    flags = {}
    for k in ("terminals", "timeouts", "rewards", "next_observations"):
        if k in data and (data[k].ndim < 1 or len(data[k]) != n):
            raise DemoError(f"{path}: {k} has shape {data[k].shape}; expected {n} rows")
    for k in ("terminals", "timeouts"):
        flags[k] = np.asarray(data[k]).reshape(n, -1)[:, 0] != 0 if k in data else np.zeros(n, bool)
    rews = data.get("rewards")
    if rews is not None:
        rews = rews.reshape(n, -1)[:, 0] if rews.ndim == 2 and rews.shape[1] == 1 else rews
    nxt = data.get("next_observations")
    if nxt is not None and nxt.shape[1:] != obs.shape[1:]:
        raise DemoError(f"{path}: next_observations has shape {nxt.shape}, observations {obs.shape}")
    ends = np.flatnonzero(flags["terminals"] | flags["timeouts"])
    if n and (not len(ends) or ends[-1] != n - 1):
        ends = np.append(ends, n - 1)
    obs_rows, act_rows, lengths, term, trunc, dropped = [], [], [], [], [], 0
    start = 0
    for end in ends:
        idx = np.arange(start, end + 1)
        start = end + 1
        if nxt is not None:
            obs_rows.append(np.concatenate([obs[idx], nxt[end:end + 1]]))
            act_rows.append(idx)
        else:
            # the next observation of the last transition is unknown: drop that transition
            dropped += 1
            if len(idx) < 2:
                continue
            obs_rows.append(obs[idx])
            act_rows.append(idx[:-1])
        lengths.append(len(act_rows[-1]))
        is_term = bool(flags["terminals"][end]) and nxt is not None
        term.append(is_term)
        trunc.append(not is_term)
    if not lengths:
        raise DemoError(f"{path}: no episode with at least one complete transition")
    rows = np.concatenate(act_rows)
    meta: dict[str, Any] = {"format": "d4rl"}
    if dropped:
        meta["dropped_transitions"] = dropped
        meta["note"] = ("no next_observations: the last transition of each episode was dropped "
                        "(its next observation is unknown) and episodes count as truncated")
    return DemoArrays(
        obs=np.concatenate(obs_rows), actions=acts[rows], lengths=np.array(lengths),
        terminated=np.array(term), truncated=np.array(trunc),
        rewards=None if rews is None else rews[rows], meta=meta,
    )


def _from_hf_folder(path: Path) -> DemoArrays:
    if (path / "dataset_dict.json").exists():
        raise DemoError(f"{path} is a DatasetDict folder; pass the folder of one split")
    if not (path / "state.json").exists():
        raise DemoError(f"{path} is a folder but not a HuggingFace `datasets` folder (no state.json)")
    try:
        import datasets
    except ImportError:
        raise DemoError(
            f"{path} is a HuggingFace datasets folder; reading it needs the `hf` extra: "
            "pip install 'grace[hf]'"
        ) from None
    folder_bytes(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a broken folder
        raise DemoError(f"{path} is not a readable datasets folder ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(ds, datasets.Dataset):
        raise DemoError(f"{path} is not a single datasets.Dataset")
    missing = [c for c in ("obs", "acts", "terminal") if c not in ds.column_names]
    if missing:
        raise DemoError(f"{path}: not imitation's trajectory layout (lacks {', '.join(missing)})")
    cols = [c for c in ("obs", "acts", "terminal", "rews") if c in ds.column_names]
    rows = ds.select_columns(cols).with_format("numpy")
    obs, acts, lengths, terminal, rews = [], [], [], [], []
    try:
        for i in range(len(rows)):
            r = rows[i]
            o, a = _plain(r["obs"], path, "obs"), _plain(r["acts"], path, "acts")
            if len(o) != len(a) + 1:
                raise DemoError(f"{path}: trajectory {i} has {len(o)} observations for {len(a)} actions")
            obs.append(o if o.ndim == 2 else o.reshape(len(o), -1))
            acts.append(a)
            lengths.append(len(a))
            terminal.append(bool(np.asarray(r["terminal"]).reshape(-1)[-1]))
            if "rews" in r:
                rews.append(_plain(r["rews"], path, "rews"))
    except DemoError:
        raise
    except Exception as exc:  # ragged or non-numeric columns
        raise DemoError(f"{path}: unreadable trajectory columns ({' '.join(str(exc).split())[:200]})") from None
    if not lengths:
        raise DemoError(f"{path}: no episodes")
    term = np.array(terminal)
    try:
        return DemoArrays(
            obs=np.concatenate(obs), actions=np.concatenate(acts), lengths=np.array(lengths),
            terminated=term, truncated=~term, rewards=np.concatenate(rews) if rews else None,
            meta={"format": "imitation-hf"},
        )
    except ValueError as exc:
        raise DemoError(f"{path}: trajectories differ in shape ({exc})") from None


def _plain(value: Any, path: Path, col: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise DemoError(f"{path}: column {col!r} is ragged or holds objects (dict observations are not supported)")
    return arr


def _need_int(arr: np.ndarray, what: str, ndim: int) -> None:
    if arr.ndim != ndim or arr.dtype.kind not in "iu":
        raise DemoError(f"{what} must be a {ndim}-D integer array, got {arr.dtype} {arr.shape}")


def check_arrays(d: DemoArrays, source: str) -> DemoArrays:
    """Dtypes, shapes, finiteness and episode lengths, before any arithmetic on them."""
    if d.obs.dtype.kind not in "biuf" or d.obs.ndim != 2:
        raise DemoError(f"{source}: observations must be a 2-D numeric array, got {d.obs.dtype} {d.obs.shape}")
    d.obs = d.obs.astype(np.float32, copy=False)
    if not np.all(np.isfinite(d.obs)):
        raise DemoError(f"{source}: observations contain NaN or inf")
    if d.actions.dtype.kind not in "biuf" or d.actions.ndim not in (1, 2):
        raise DemoError(f"{source}: actions must be a 1-D or 2-D numeric array, got {d.actions.dtype} {d.actions.shape}")
    if d.actions.dtype.kind == "f" and not np.all(np.isfinite(d.actions)):
        raise DemoError(f"{source}: actions contain NaN or inf")
    _need_int(d.lengths, f"{source}: lengths", ndim=1)
    if len(d.lengths) == 0:
        raise DemoError(f"{source}: no episodes")
    if d.lengths.min() < 1:
        bad = int(np.flatnonzero(d.lengths < 1)[0])
        raise DemoError(f"{source}: episode {bad} has length {int(d.lengths[bad])}; lengths must be >= 1")
    for name in ("terminated", "truncated"):
        flags = getattr(d, name)
        if flags.ndim != 1 or flags.dtype.kind not in "biu":
            raise DemoError(f"{source}: {name} must be a 1-D bool array, got {flags.dtype} {flags.shape}")
    if d.rewards is not None:
        if d.rewards.dtype.kind not in "biuf" or d.rewards.ndim != 1:
            raise DemoError(f"{source}: rewards must be a 1-D numeric array, got {d.rewards.dtype} {d.rewards.shape}")
        d.rewards = d.rewards.astype(np.float32, copy=False)
        if not np.all(np.isfinite(d.rewards)):
            raise DemoError(f"{source}: rewards contain NaN or inf")
    return d
