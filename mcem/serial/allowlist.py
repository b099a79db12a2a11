"""The one allow-list of what a file may rebuild besides plain values and arrays.

Files are data, never code: a file names a type by a stable name, and only the types listed
here are rebuilt, looked up in these tables (never imported or called by a name the file
gives). They are mcem's chain-state named tuples (:data:`STATE_TYPES`) and numpy's own bit
generators (:data:`BIT_GENERATORS`). MALA chains are not listed: the kernel takes a user gradient
function, which a checkpoint of the run's options refuses, so its state never reaches a file.

The state classes are imported here directly (none of their modules imports the file formats),
so the dependency is visible in the module graph.
"""

from __future__ import annotations

import types

import numpy as np

from ..distributed import ShardedState
from ..estep import EStepState
from ..kernels.compose import ComposeState, ExactState
from ..kernels.csmc import CSMCState
from ..kernels.ensemble import EmceeState
from ..kernels.ffbs import FFBSState
from ..kernels.kalman import KalmanState
from ..kernels.gibbs import GibbsState
from ..kernels.metropolis import RWMState

__all__ = ["STATE_TYPES", "STATE_NAMES", "STATE_CLASSES", "LEGACY_STATE_NAMES", "BIT_GENERATORS"]

_STATES = (
    # stable name (what files hold), class, module of the class in format "mcem-checkpoint/1"
    ("EStepState", EStepState, "mcem.estep"),
    ("ShardedState", ShardedState, "mcem.distributed"),
    ("ComposeState", ComposeState, "mcem.kernels.compose"),
    ("ExactState", ExactState, "mcem.kernels.compose"),
    ("RWMState", RWMState, "mcem.kernels.metropolis"),
    ("GibbsState", GibbsState, "mcem.kernels.gibbs"),
    ("EmceeState", EmceeState, "mcem.kernels.ensemble"),
    ("FFBSState", FFBSState, "mcem.kernels.ffbs"),
    ("CSMCState", CSMCState, "mcem.kernels.csmc"),
    ("KalmanState", KalmanState, "mcem.kernels.kalman"),
)

#: Stable name -> the chain-state class rebuilt for it.
STATE_TYPES = types.MappingProxyType({name: cls for name, cls, _ in _STATES})

#: Chain-state class -> its stable name (only these classes are written).
STATE_NAMES = types.MappingProxyType({cls: name for name, cls, _ in _STATES})

#: Stable name -> (module, class name) as files of format ``"mcem-checkpoint/1"`` spelled it.
STATE_CLASSES = types.MappingProxyType({name: (module, name) for name, _, module in _STATES})

#: The format-1 spelling ``"module:qualname"`` -> stable name.
LEGACY_STATE_NAMES = types.MappingProxyType({f"{module}:{name}": name for name, _, module in _STATES})

#: numpy's bit generators, the only ones a file may name.
BIT_GENERATORS = types.MappingProxyType({
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
    "MT19937": np.random.MT19937,
})
