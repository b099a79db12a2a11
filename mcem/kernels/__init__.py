"""E-step samplers: kernels that draw latents from p(z | x; theta).

Site kernels (one latent array, no model inside; ``init`` / ``step`` / ``refresh``):

* :class:`Gibbs`  -- enumerated Gibbs for finite discrete latents (exact per-unit conditionals);
* :class:`RWM`    -- adaptive random-walk Metropolis, per unit or joint, on the unconstrained scale;
* :class:`MALA`   -- Metropolis-adjusted Langevin with a user gradient, per unit or joint;
* :class:`Emcee`  -- emcee's ensemble sampler (walkers are chains) for a small latent vector;
* :class:`FFBS`   -- forward filtering backward sampling of a whole discrete chain (HMM states);
* :class:`KalmanSmoother` -- a whole linear-Gaussian chain from its Gaussian full conditional;
* :class:`CSMC`   -- conditional SMC (particle Gibbs) for other continuous chains.

Model-level kernels (all latents): :class:`Compose` (site by site) and :class:`Exact` (the
model's exact posterior sampler). :func:`build_kernel` resolves ``sampler="auto"`` and explicit
specifications.
"""

from .base import Kernel, SiteInfo, Target, support_transform
from .compose import Compose, ComposeState, Exact, ExactState
from .csmc import CSMC, CSMCState
from .ensemble import Emcee, EmceeState
from .ffbs import FFBS, FFBSState
from .kalman import KalmanSmoother, KalmanState
from .gibbs import Gibbs, GibbsState, categorical_from_logits
from .mala import MALA, MALAState
from .metropolis import RWM, RWMState
from .select import KERNELS, auto_site_kernel, build_kernel, site_mode

__all__ = [
    "CSMC",
    "CSMCState",
    "FFBS",
    "FFBSState",
    "KalmanSmoother",
    "KalmanState",
    "KERNELS",
    "MALA",
    "RWM",
    "Compose",
    "ComposeState",
    "Emcee",
    "EmceeState",
    "Exact",
    "ExactState",
    "Gibbs",
    "GibbsState",
    "Kernel",
    "MALAState",
    "RWMState",
    "SiteInfo",
    "Target",
    "auto_site_kernel",
    "build_kernel",
    "categorical_from_logits",
    "site_mode",
    "support_transform",
]
