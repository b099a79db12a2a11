"""MCEM without keeping draws (``stream=True``): running sufficient statistics, and delta-Q by
replaying the same chains from their saved state and generator."""

from __future__ import annotations

import numpy as np

from .. import mstep as M
from ..serial.codec import clone_generator

__all__ = ["StreamedDraws", "stream_run", "concat_draws"]


class StreamedDraws:
    """Draws that are not kept: running sufficient statistics plus what replays them."""

    def __init__(self, model):
        self.model = model
        self.sums, self.count, self.blocks = None, 0, []

    def add(self, z):
        st = self.model.sufficient_stats_fn(z, self.model.data)  # averaged over the chains
        st = {k: np.asarray(v, dtype=float) for k, v in st.items()}
        self.sums = st if self.sums is None else {k: self.sums[k] + st[k] for k in st}
        self.count += 1

    def merge(self, other):
        self.sums = {k: self.sums[k] + other.sums[k] for k in self.sums}
        self.count += other.count
        self.blocks += other.blocks

    def mstep(self, theta):
        """The closed-form M step from the running statistics (checked by the caller)."""
        stats = {k: v / self.count for k, v in self.sums.items()}
        return self.model.mstep_fn(stats, self.model.data), M.MStepInfo(True, 1, 1, "closed form (streamed)")

    def delta_q(self, es, new, old):
        """Replay every block of this iteration's chains; per-draw differences of log p."""
        parts = []
        for state, rng, n, burn in self.blocks:
            rows = []

            def diff(z, rows=rows):
                rows.append(self.model.log_joint_sum(new, z, 1) - self.model.log_joint_sum(old, z, 1))

            es.run(old, state, n, clone_generator(rng), burn=burn, keep=False, reducer=diff)
            parts.append(np.stack(rows, axis=1))  # (chain, draw)
        d = np.concatenate(parts, axis=1)
        return float(np.mean(d)), M.mcse_of_mean(d)


def stream_run(es, model, theta, state, n, rng, burn=None):
    """Run the chains keeping no draws; return the E-step result and the streamed statistics."""
    acc = StreamedDraws(model)
    acc.blocks.append((state, clone_generator(rng), n, burn))
    res = es.run(theta, state, n, rng, burn=burn, keep=False, reducer=acc.add)
    return res, acc


def concat_draws(*blocks):
    """Draws of the same chains continued (or from several iterations): joined along the draw axis."""
    return {k: np.concatenate([b[k] for b in blocks], axis=1) for k in blocks[0]}
