"""CMA-ES (Hansen's tutorial, arXiv 1604.00772, Fig. 6 / Table 1) for spaces of up to a few thousand numbers.

Every generation's samples come from its own seeded generator, and the update uses only the logged values, so a
run is rebuilt bitwise from (seed, values per generation): mean m, step size sigma and covariance C are recomputed.
"""

from __future__ import annotations

import math

import numpy as np

from blackbox_zo.step.cma_settings import CMASettings
from blackbox_zo.weights.noise import derive_seed

__all__ = ["CMAES", "CMASettings", "MAX_DIM", "default_popsize"]

MAX_DIM = 10_000  # C is dense (d x d float64): 10k dims = 800 MB; use a subspace for anything larger


def default_popsize(dim: int) -> int:
    return 4 + int(3 * math.log(dim))  # lambda = 4 + floor(3 ln n) (Table 1)


class CMAES:
    """Minimises: ask() -> lambda candidates, tell(values) -> m, sigma, C updated (positive weights, no active CMA)."""

    def __init__(self, mean, sigma0: float, popsize: int | None = None, seed: int = 0):
        m = np.array(mean, dtype=np.float64).reshape(-1)
        n = m.size
        if not 1 <= n <= MAX_DIM:
            raise ValueError(f"CMA-ES needs 1 to {MAX_DIM} dimensions, got {n}: wrap the space in bz.subspace(space, dim=d)")
        if not (isinstance(sigma0, (int, float)) and math.isfinite(sigma0) and sigma0 > 0):
            raise ValueError(f"sigma0 must be a finite number > 0, got {sigma0!r}")
        lam = default_popsize(n) if popsize is None else popsize
        if isinstance(lam, bool) or not isinstance(lam, int) or lam < 2:
            raise ValueError(f"popsize must be an integer >= 2 (or None for 4 + 3 ln d), got {popsize!r}")
        self.n, self.lam, self.seed = n, lam, seed
        self.mu = lam // 2  # mu = floor(lambda / 2)
        w = np.log((lam + 1) / 2) - np.log(np.arange(1, self.mu + 1))  # w'_i = ln((lambda+1)/2) - ln i
        self.weights = w / w.sum()  # positive weights sum to 1
        self.mueff = 1.0 / np.sum(self.weights ** 2)  # mu_eff = (sum w)^2 / sum w^2
        mueff = self.mueff
        self.cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)  # c_c
        self.cs = (mueff + 2) / (n + mueff + 5)  # c_sigma
        self.c1 = 2 / ((n + 1.3) ** 2 + mueff)  # c_1 = alpha_cov / ((n + 1.3)^2 + mu_eff), alpha_cov = 2
        self.cmu = min(1 - self.c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))  # c_mu, alpha_cov = 2
        self.damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + self.cs  # d_sigma
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))  # E||N(0, I)||
        # eigendecomposition every `lazy` generations: O(n^3) amortised to O(n^2) per generation (tutorial, B.2)
        self.lazy = max(1, int(1 / (10 * n * (self.c1 + self.cmu))))
        self.mean, self.sigma = m, float(sigma0)
        self.pc, self.ps = np.zeros(n), np.zeros(n)
        self.C = np.eye(n)
        self.B, self.D = np.eye(n), np.ones(n)  # C = B diag(D^2) B^T
        self.generation = 0
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def ask(self) -> np.ndarray:
        """lambda candidates x_k = m + sigma B D z_k, z_k ~ N(0, I) from the generation's own seed; rows of [lambda, n]."""
        rng = np.random.default_rng(derive_seed(self.seed, "cma", self.generation))
        z = rng.standard_normal((self.lam, self.n))
        y = (z * self.D) @ self.B.T  # y_k = B D z_k ~ N(0, C)
        self._pending = (z, y)
        return self.mean + self.sigma * y  # x_k ~ N(m, sigma^2 C)

    def tell(self, values) -> None:
        """Update from the values of the asked candidates (lower is better; NaN ranks last)."""
        if self._pending is None:
            raise RuntimeError("tell() before ask(): ask for this generation's candidates first")
        f = np.array(values, dtype=np.float64).reshape(-1)
        if f.size != self.lam:
            raise ValueError(f"tell: got {f.size} values for {self.lam} candidates")
        z, y = self._pending
        self._pending = None
        f = np.where(np.isfinite(f), f, np.inf)
        order = np.argsort(f, kind="stable")[: self.mu]  # the mu best, ties in asked order
        y_w = self.weights @ y[order]  # <y>_w = sum_i w_i y_{i:lambda}
        z_w = self.weights @ z[order]  # C^{-1/2} <y>_w = B <z>_w (with the B, D the samples were drawn from)
        self.mean = self.mean + self.sigma * y_w  # m <- m + c_m sigma <y>_w, c_m = 1
        n, cs, cc, g = self.n, self.cs, self.cc, self.generation
        self.ps = (1 - cs) * self.ps + math.sqrt(cs * (2 - cs) * self.mueff) * (self.B @ z_w)  # p_sigma
        ps_norm = float(np.linalg.norm(self.ps))
        # h_sigma stalls p_c while ||p_sigma|| is large (sigma just grew fast): avoids a C blown up along p_c
        h_sig = ps_norm / math.sqrt(1 - (1 - cs) ** (2 * (g + 1))) < (1.4 + 2 / (n + 1)) * self.chi_n
        self.pc = (1 - cc) * self.pc + h_sig * math.sqrt(cc * (2 - cc) * self.mueff) * y_w  # p_c
        delta_h = (1 - h_sig) * cc * (2 - cc)
        rank_mu = (y[order].T * self.weights) @ y[order]  # sum_i w_i y_i y_i^T
        self.C = ((1 + self.c1 * delta_h - self.c1 - self.cmu) * self.C  # sum w_j = 1
                  + self.c1 * np.outer(self.pc, self.pc) + self.cmu * rank_mu)  # rank-one + rank-mu
        self.sigma *= math.exp((cs / self.damps) * (ps_norm / self.chi_n - 1))  # CSA: sigma grows if ||p_s|| > E||N||
        self.generation += 1
        if self.generation % self.lazy == 0:
            self._decompose()

    def skip(self) -> None:
        """Drop the asked generation without an update (no usable values); the next ask draws from a new seed."""
        self._pending = None
        self.generation += 1

    def _decompose(self) -> None:
        self.C = np.triu(self.C) + np.triu(self.C, 1).T  # enforce symmetry
        eigvals, self.B = np.linalg.eigh(self.C)
        self.D = np.sqrt(np.maximum(eigvals, 1e-300))  # C = B diag(D^2) B^T

    def state_digest(self) -> str:
        """Digest of m, sigma, C, p_c, p_sigma: equal digests = bitwise the same state."""
        import hashlib

        h = hashlib.blake2b(digest_size=8)
        for a in (self.mean, np.array([self.sigma]), self.C, self.pc, self.ps):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()
