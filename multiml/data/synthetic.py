"""A deterministic synthetic two-step "physics" dataset (generated, never downloaded).

Each event holds two particles from either a resonance decay (signal) or a continuum
(background). A coarse ring of calorimeter towers measures them with smearing and noise:

- ``towers`` ``(N, num_towers)``: the detector measurement (the input of step 1);
- ``kinematics`` ``(N, 3)``: the hidden true quantities — leading energy ``E1``,
  subleading energy ``E2`` and the opening angle ``cos(dphi)`` (the target of step 1);
- ``label`` ``(N,)``: 1 for signal, 0 for background (the target of step 2).

The invariant mass ``m^2 = 2 E1 E2 (1 - cos(dphi))`` separates the classes: signal peaks at
``resonance_mass``, background is broad. Step 1 regresses the kinematics from the towers,
step 2 classifies from step 1's estimate — a multi-step problem with a known intermediate
target.

>>> data = generate_two_step(num_events=4, seed=0)
>>> sorted(data), data['towers'].shape, data['kinematics'].shape
(['kinematics', 'label', 'towers'], (4, 16), (4, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from multiml.storegate import StoreGate


def generate_two_step(
    num_events: int = 6000,
    seed: int = 0,
    num_towers: int = 16,
    resonance_mass: float = 1.0,
    mass_width: float = 0.04,
    tower_width: float = 0.35,
    noise: float = 0.05,
    signal_fraction: float = 0.5,
) -> dict[str, np.ndarray]:
    """Generate the dataset as a dict of float32/int64 arrays (see the module docstring)."""
    if num_events < 1:
        raise ValueError(f"num_events={num_events}: expected a positive int")
    if not 0.0 < signal_fraction < 1.0:
        raise ValueError(f"signal_fraction={signal_fraction}: expected a value in (0, 1)")
    rng = np.random.default_rng(seed)
    label = (rng.random(num_events) < signal_fraction).astype(np.int64)
    energies = np.sort(rng.uniform(0.6, 1.6, size=(num_events, 2)), axis=1)[:, ::-1]
    e1, e2 = energies[:, 0], energies[:, 1]
    mass = rng.normal(resonance_mass, mass_width, size=num_events)
    cos_signal = np.clip(1.0 - mass**2 / (2.0 * e1 * e2), -1.0, 1.0)
    cos_background = np.cos(rng.uniform(0.0, np.pi, size=num_events))
    cos_dphi = np.where(label == 1, cos_signal, cos_background)
    dphi = np.arccos(cos_dphi)
    phi1 = rng.uniform(-0.25, 0.25, size=num_events)
    phi2 = phi1 + dphi * rng.choice([-1.0, 1.0], size=num_events)
    centres = np.linspace(-np.pi, np.pi, num_towers, endpoint=False)
    towers = np.zeros((num_events, num_towers))
    for energy, phi in ((e1, phi1), (e2, phi2)):
        delta = np.angle(np.exp(1j * (centres[None, :] - phi[:, None])))
        towers += energy[:, None] * np.exp(-0.5 * (delta / tower_width) ** 2)
    towers *= rng.normal(1.0, noise, size=towers.shape)
    towers += rng.normal(0.0, noise, size=towers.shape)
    kinematics = np.stack([e1, e2, cos_dphi], axis=1)
    return {
        "towers": towers.astype(np.float32),
        "kinematics": kinematics.astype(np.float32),
        "label": label,
    }


def load_two_step(
    storegate: StoreGate,
    num_events: int = 6000,
    seed: int = 0,
    phase: Sequence[float] | Sequence[int] | str = (0.6, 0.2, 0.2),
    **generator_args: Any,
) -> None:
    """Generate the two-step dataset into ``storegate`` (current data_id) and compile it."""
    data = generate_two_step(num_events=num_events, seed=seed, **generator_args)
    phase = tuple(phase) if not isinstance(phase, str) else phase
    for name, array in data.items():
        storegate.add_data(name, array, phase=phase)
    storegate.compile()
