"""Bayesian baselines of the IBL task: the exact ideal observer and the Bayesian actor.

Generative model: block sides b_n ∈ {L, R} alternate, with block lengths truncated-geometric; the
trial side s_n equals b_n with probability q = 0.8; the contrast μ_n is uniform over the contrasts;
each observation gives d = o^R − o^L ~ N(σ(s_n) μ_n, 2σ²), σ(R) = +1, σ(L) = −1.

Within a trial (exact). With prior π_n = P(s_n = R | past) and S = Σ_τ d_τ over n observations,

    λ(S, n) = log Σ_μ P(μ) exp(μS/2σ² − nμ²/4σ²) − log Σ_μ P(μ) exp(−μS/2σ² − nμ²/4σ²)

is the exact log-likelihood ratio log L_R / L_L of the per-contrast products
L_R = Σ_μ P(μ) Π_τ N(d_τ; +μ, 2σ²) (the factor common to both sides cancels), and
P(s_n = R | d_1:n) = sigmoid(logit π_n + λ).

Across trials (forward filter over the block). The state is (block side, run length k = position of
the trial in its block); after trial n the block ends with the hazard h(k) of the truncated
geometric (0 for k < 20, 1 at k = 100) and the next block has the other side — the exact model,
``hazard="true"`` — or, with ``hazard="constant"``, the run length is dropped and the side flips
with the constant probability p = 1/50. The evidence of trial n about b_n is the side the feedback
reveals (an action's feedback reveals s_n: correct ⇒ the chosen side, incorrect ⇒ the other), with
likelihood E(s_n | b) = q [s_n = b] + (1 − q) [s_n ≠ b]; a timeout reveals nothing, so its evidence is
the trial's stimuli, Σ_s E(s | b) L_s. The next stimulus prior is
π_{n+1} = Σ_b P(b_{n+1} = b | past) E(R | b).

``variant="reference"`` reproduces the reference code instead (see docs/ibl-task.md): the observer
with hard-coded T = [[.98, .02], [.02, .98]] and E = [[.8, .2], [.2, .8]], updating on the true side
even after timeouts and taking its prior from the filtered block posterior without the transition;
the actor re-marginalising μ at every step, treating timeouts as errors and using the predictive
block probability itself as its stimulus prior (the emission step omitted).

Sides are coded −1 (Left) and +1 (Right); block-state arrays index 0 = Left, 1 = Right.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnscope.core.results import Result
from rnnscope.tasks.ibl.blocks import block_hazard, contrast_probabilities
from rnnscope.tasks.ibl.env import CHOOSE_RIGHT, NO_CHOICE, choose
from rnnscope.tasks.ibl.params import IBLTaskParams
from rnnscope.tasks.ibl.rollout import CLOSED_LOOP_THREADS, torch_threads
from rnnscope.tasks.ibl.session import SessionRecord, trial_row_index

Variant = Literal["exact", "reference"]
Hazard = Literal["true", "constant"]

REFERENCE_OBSERVER_HAZARD = 0.02
"""The block-switch probability hard-coded in the reference observer's T = [[.98, .02], [.02, .98]]."""

REFERENCE_OBSERVER_EMISSION = 0.8
"""P(trial side = block side) hard-coded in the reference observer's E = [[.8, .2], [.2, .8]]."""


@dataclasses.dataclass(frozen=True)
class _FilterRules:
    """How a baseline updates its beliefs.

    ``hazard`` (K,): switch probability after the k-th trial of a block, k = 1 … K (K = 1: constant).
    ``emission``: q = P(s = b). ``initial_right``: P(b_1 = R).
    ``prior``: "predictive" (π = Σ_b P(b_{n+1} | past) E(R|b), exact), "posterior" (π from the
    filtered posterior of trial n, no transition; reference observer) or "predictive_block"
    (π = P(b_{n+1} = R | past); reference actor).
    ``timeout_evidence``: "stimulus" (exact), "true_side" (reference observer) or "as_error"
    (reference actor: the side opposite to the one it leaned to).
    ``within_trial``: "exact" (per-contrast products) or "remarginalised" (reference actor).
    """

    hazard: np.ndarray
    emission: float
    initial_right: float
    prior: Literal["predictive", "posterior", "predictive_block"]
    timeout_evidence: Literal["stimulus", "true_side", "as_error"]
    within_trial: Literal["exact", "remarginalised"]


@dataclasses.dataclass(frozen=True)
class ObserverResult(Result):
    """The ideal observer's beliefs along a recorded session, paced by the recorded agent.

    Per step, aligned with the record's step table (n_steps,), float64 unless stated:
    ``block_prior_right`` P(b_n = R | feedback of earlier trials); ``block_posterior_right``
    P(b_n = R | that feedback and trial n's observations so far); ``stimulus_prior_right`` π_n;
    ``stimulus_posterior_right`` P(s_n = R | past feedback, trial n's observations so far) (π_n on
    blank steps); ``would_act`` (bool) the observer would act at this step (an observation step with
    posterior > threshold or < 1 − threshold).
    Per trial, aligned with the record's trial table (n_trials,): ``choice_side`` (int64, ±1) the
    side of round(posterior) at the recorded agent's decision (trial-end) step (a posterior of
    exactly 0.5 rounds to Left, as ``numpy.round`` does); ``correct`` (bool).
    ``variant``, ``hazard``: the options used.
    """

    block_prior_right: np.ndarray
    block_posterior_right: np.ndarray
    stimulus_prior_right: np.ndarray
    stimulus_posterior_right: np.ndarray
    would_act: np.ndarray
    choice_side: np.ndarray
    correct: np.ndarray
    variant: str
    hazard: str


def stimulus_log_likelihood_ratio(sum_d: Tensor, n_obs: Tensor, params: IBLTaskParams) -> Tensor:
    """λ = log L_R − log L_L of n observations with sum S, marginalised exactly over the contrasts.

    ``sum_d`` S and ``n_obs`` n are tensors of the same shape (...); returns λ of that shape in
    float64. L_side = Σ_μ P(μ) Π_τ N(d_τ; ±μ, 2σ²); λ = 0 when n = 0.
    """
    terms = _contrast_terms(params, sum_d.device)
    return _log_likelihood_ratio(sum_d.to(torch.float64), n_obs.to(torch.float64), terms)


class _ContrastTerms(NamedTuple):
    """Per-contrast constants of λ: log P(μ), μ / 2σ² and μ² / 4σ², each of shape (n_contrasts,)."""

    log_prior: Tensor
    linear: Tensor
    quadratic: Tensor


def _contrast_terms(params: IBLTaskParams, device: torch.device | str = "cpu") -> _ContrastTerms:
    mu = torch.as_tensor(params.contrasts, dtype=torch.float64, device=device)
    two_var = 2.0 * params.noise_std**2
    log_prior = torch.as_tensor(np.log(contrast_probabilities(params)), dtype=torch.float64, device=device)
    return _ContrastTerms(log_prior=log_prior, linear=mu / two_var, quadratic=mu**2 / (2.0 * two_var))


def _log_likelihood_ratio(sum_d: Tensor, n_obs: Tensor, terms: _ContrastTerms) -> Tensor:
    linear = sum_d[..., None] * terms.linear
    base = terms.log_prior - n_obs[..., None] * terms.quadratic
    return torch.logsumexp(base + linear, dim=-1) - torch.logsumexp(base - linear, dim=-1)


def observe_session(
    record: SessionRecord,
    *,
    variant: Variant = "exact",
    hazard: Hazard | None = None,
    n_threads: int | None = CLOSED_LOOP_THREADS,
) -> ObserverResult:
    """Run the ideal observer along a recorded session, paced by the recorded agent's decisions.

    The observer sees the same observations and feedback as the agent: an action's feedback reveals
    the trial side, a timeout does not. For ``variant="exact"``, ``hazard`` is "true" (default; the
    exact run-length filter) or "constant" (a switch with probability ``block_geometric_p`` after
    every trial); the reference variant has its own hard-coded constant hazard and accepts no
    ``hazard``. Vectorised over steps; the block filter scans the trials, vectorised over sessions,
    with ``n_threads`` torch threads (see :data:`~rnnscope.tasks.ibl.rollout.CLOSED_LOOP_THREADS`).
    """
    rules = _observer_rules(record.task_params, variant, hazard)
    with torch_threads(n_threads):
        return _observe(record, rules, variant, hazard)


def _observe(record: SessionRecord, rules: _FilterRules, variant: Variant, hazard: Hazard | None) -> ObserverResult:
    params = record.task_params
    cols = record.step_columns
    trial_row = trial_row_index(cols)
    is_obs = cols["is_observation"]
    d = np.where(is_obs, cols["right_obs"] - cols["left_obs"], 0.0)
    first_row = np.flatnonzero(cols["step_in_trial"] == 0)
    sum_d = _within_trial_cumsum(d, first_row, trial_row)
    n_obs = _within_trial_cumsum(is_obs.astype(np.float64), first_row, trial_row)
    lam = stimulus_log_likelihood_ratio(torch.from_numpy(sum_d), torch.from_numpy(n_obs), params)

    end = np.flatnonzero(cols["trial_end"])
    true_side = torch.from_numpy(cols["trial_side"][end])
    lik = _side_likelihood(true_side, rules.emission)
    if rules.timeout_evidence == "stimulus":
        acted = torch.from_numpy(cols["action_taken"][end])
        lik = torch.where(acted[:, None], lik, _stimulus_likelihood(lam[end], rules.emission))
    session = torch.from_numpy(cols["session"][end])
    position = torch.from_numpy(cols["trial_in_session"][end])
    block_marg_sxnx2, prior_sxn = _scan_trials(rules, lik, session, position, record.n_sessions)

    step_session = torch.from_numpy(cols["session"])
    step_trial = torch.from_numpy(cols["trial_in_session"])
    block_prior = block_marg_sxnx2[step_session, step_trial]
    prior = prior_sxn[step_session, step_trial]
    posterior = torch.sigmoid(_logit(prior) + lam)
    block_joint = block_prior * _stimulus_likelihood(lam, rules.emission)
    block_posterior = block_joint[:, 1] / block_joint.sum(dim=1)
    threshold = params.action_threshold
    would_act = torch.from_numpy(is_obs) & ((posterior > threshold) | (posterior < 1.0 - threshold))
    choice = torch.where(posterior[end] > 0.5, 1, -1)
    return ObserverResult(
        block_prior_right=block_prior[:, 1].numpy(),
        block_posterior_right=block_posterior.numpy(),
        stimulus_prior_right=prior.numpy(),
        stimulus_posterior_right=posterior.numpy(),
        would_act=would_act.numpy(),
        choice_side=choice.numpy().astype(np.int64),
        correct=(choice == true_side).numpy(),
        variant=variant,
        hazard=_hazard_name(variant, hazard),
    )


class BayesianActor:
    """A Bayesian agent run closed-loop: a :class:`~rnnscope.tasks.ibl.rollout.Policy`.

    It outputs (1 − P, P) with P = P(s_n = R | everything seen so far) and so acts, through the
    environment's rule, when its posterior exceeds the action threshold (or falls below
    1 − threshold). It reads only its inputs x = [o^L, o^R, r_prev] and its own past outputs: it
    counts steps to tell blank from observation steps, and at the first step of a new trial reads
    the feedback of the previous one. ``variant="exact"`` uses the exact within-trial posterior and
    the block filter with ``hazard`` "true" (default) or "constant"; ``variant="reference"`` is the
    reference's actor (module docstring). Vectorised over the batch; computes in float64 and returns
    probabilities in the dtype of x.

    ``hidden`` (B, 3) float32 holds (P(b_n = R | past feedback), π_n, P(s_n = R | …)) after the last
    :meth:`act`, so the runner can record the actor's beliefs.
    """

    def __init__(
        self,
        params: IBLTaskParams | None = None,
        *,
        variant: Variant = "exact",
        hazard: Hazard | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.params = IBLTaskParams() if params is None else params
        if not isinstance(self.params, IBLTaskParams):
            raise TypeError(f"params must be an IBLTaskParams; got {type(self.params).__name__}")
        self.variant = variant
        self.hazard = _hazard_name(variant, hazard)
        self._rules = _actor_rules(self.params, variant, hazard)
        self._device = torch.device(device)
        self._hazard_k = torch.as_tensor(self._rules.hazard, dtype=torch.float64, device=self._device)
        self._terms = _contrast_terms(self.params, self._device)
        self._reward_mid = 0.5 * (self.params.reward_correct + self.params.reward_incorrect)
        self._batch_size = 0

    def reset(self, batch_size: int) -> None:
        """Start ``batch_size`` new sessions: first-block prior, no evidence."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        b, dev = batch_size, self._device
        self._batch_size = b
        self._pred = _initial_state(self._rules, b, dev)
        marginal = self._pred.sum(dim=-1)
        self._prior = _stimulus_prior(self._rules, marginal, marginal)
        self._sum_d = torch.zeros(b, dtype=torch.float64, device=dev)
        self._n_obs = torch.zeros(b, dtype=torch.float64, device=dev)
        self._lam = torch.zeros(b, dtype=torch.float64, device=dev)
        self._step = torch.zeros(b, dtype=torch.int64, device=dev)
        self._ended = torch.zeros(b, dtype=torch.bool, device=dev)
        self._acted = torch.zeros(b, dtype=torch.bool, device=dev)
        self._chosen = torch.zeros(b, dtype=torch.int64, device=dev)
        self._posterior = self._prior.clone()

    @property
    def hidden(self) -> Tensor:
        """(B, 3) float32: block prior P(b = R), stimulus prior π, stimulus posterior."""
        block_right = self._pred.sum(dim=-1)[:, 1]
        return torch.stack([block_right, self._prior, self._posterior], dim=1).float()

    def act(self, x: Tensor) -> Tensor:
        """Read x (B, 3) of the current step; return (p_L, p_R) of shape (B, 2) in x's dtype."""
        if self._batch_size == 0:
            raise RuntimeError("call BayesianActor.reset(batch_size) before act()")
        if x.shape != (self._batch_size, 3):
            raise ValueError(f"x must have shape ({self._batch_size}, 3); got {tuple(x.shape)}")
        p, rules = self.params, self._rules
        x64 = x.to(device=self._device, dtype=torch.float64)
        self._apply_feedback(x64[:, 2])

        is_obs = self._step >= p.blank_steps
        d = torch.where(is_obs, x64[:, 1] - x64[:, 0], 0.0)
        self._sum_d = self._sum_d + d
        self._n_obs = self._n_obs + is_obs
        if rules.within_trial == "exact":
            self._lam = _log_likelihood_ratio(self._sum_d, self._n_obs, self._terms)
        else:
            self._lam = self._lam + _log_likelihood_ratio(d, is_obs.to(torch.float64), self._terms)
        self._posterior = torch.sigmoid(_logit(self._prior) + self._lam)
        probs = torch.stack([1.0 - self._posterior, self._posterior], dim=1).to(x.dtype)

        choice = choose(probs, p.action_threshold)
        acted = is_obs & (choice != NO_CHOICE)
        timeout = is_obs & ~acted & (self._n_obs >= p.max_observations)
        self._ended = acted | timeout
        self._acted = acted
        leaning_right = torch.where(acted, choice == CHOOSE_RIGHT, self._posterior > 0.5)
        self._chosen = 2 * leaning_right.long() - 1
        self._step = self._step + 1
        return probs

    def _apply_feedback(self, reward: Tensor) -> None:
        """At the first step after a trial ended: update the block filter, reset the trial's evidence."""
        rules, ended = self._rules, self._ended
        good = reward > self._reward_mid
        inferred = torch.where(good, self._chosen, -self._chosen)
        lik = _side_likelihood(inferred, rules.emission)
        if rules.timeout_evidence == "stimulus":
            lik = torch.where(self._acted[:, None], lik, _stimulus_likelihood(self._lam, rules.emission))
        posterior = _normalise(self._pred * lik[:, :, None])
        predicted = _predict(posterior, self._hazard_k)
        prior = _stimulus_prior(rules, predicted.sum(dim=-1), posterior.sum(dim=-1))
        self._pred = torch.where(ended[:, None, None], predicted, self._pred)
        self._prior = torch.where(ended, prior, self._prior)
        keep = ~ended
        self._sum_d = self._sum_d * keep
        self._n_obs = self._n_obs * keep
        self._lam = self._lam * keep
        self._step = self._step * keep


def _hazard_name(variant: Variant, hazard: Hazard | None) -> str:
    if variant not in ("exact", "reference"):
        raise ValueError(f"variant must be 'exact' or 'reference'; got {variant!r}")
    if variant == "reference":
        if hazard is not None:
            raise ValueError(
                "hazard applies to variant='exact' only; the reference variant uses its own constant hazard"
            )
        return "constant"
    hazard = "true" if hazard is None else hazard
    if hazard not in ("true", "constant"):
        raise ValueError(f"hazard must be 'true' or 'constant'; got {hazard!r}")
    return hazard


def _exact_rules(params: IBLTaskParams, hazard: Hazard | None) -> _FilterRules:
    if _hazard_name("exact", hazard) == "true":
        hazard_k = block_hazard(params)[1:]
    else:
        hazard_k = np.array([params.block_geometric_p])
    return _FilterRules(
        hazard=hazard_k,
        emission=params.block_side_prob,
        initial_right=params.first_block_right_prob,
        prior="predictive",
        timeout_evidence="stimulus",
        within_trial="exact",
    )


def _observer_rules(params: IBLTaskParams, variant: Variant, hazard: Hazard | None) -> _FilterRules:
    _hazard_name(variant, hazard)
    if variant == "exact":
        return _exact_rules(params, hazard)
    return _FilterRules(
        hazard=np.array([REFERENCE_OBSERVER_HAZARD]),
        emission=REFERENCE_OBSERVER_EMISSION,
        initial_right=0.5,
        prior="posterior",
        timeout_evidence="true_side",
        within_trial="exact",
    )


def _actor_rules(params: IBLTaskParams, variant: Variant, hazard: Hazard | None) -> _FilterRules:
    _hazard_name(variant, hazard)
    if variant == "exact":
        return _exact_rules(params, hazard)
    return _FilterRules(
        hazard=np.array([params.block_geometric_p]),
        emission=params.block_side_prob,
        initial_right=0.5,
        prior="predictive_block",
        timeout_evidence="as_error",
        within_trial="remarginalised",
    )


def _initial_state(rules: _FilterRules, batch_size: int, device: torch.device | str = "cpu") -> Tensor:
    """(B, 2, K): the first trial is the first of its block; its side is Right w.p. initial_right."""
    state = torch.zeros(batch_size, 2, rules.hazard.size, dtype=torch.float64, device=device)
    state[:, 0, 0] = 1.0 - rules.initial_right
    state[:, 1, 0] = rules.initial_right
    return state


def _predict(posterior_bx2xk: Tensor, hazard_k: Tensor) -> Tensor:
    """One trial ahead: each block ends after its k-th trial w.p. h(k); a new block has the other side."""
    ends_bx2xk = posterior_bx2xk * hazard_k
    stays_bx2xk = posterior_bx2xk - ends_bx2xk
    if hazard_k.numel() == 1:
        predicted = stays_bx2xk.clone()
    else:
        predicted = torch.zeros_like(posterior_bx2xk)
        predicted[:, :, 1:] = stays_bx2xk[:, :, :-1]
    predicted[:, :, 0] += ends_bx2xk.sum(dim=-1).flip(1)
    return predicted


def _logit(p: Tensor) -> Tensor:
    return torch.log(p) - torch.log1p(-p)


def _normalise(state_bx2xk: Tensor) -> Tensor:
    return state_bx2xk / state_bx2xk.sum(dim=(1, 2), keepdim=True)


def _side_likelihood(side: Tensor, emission: float) -> Tensor:
    """E(s | b) for b = (L, R), of shape (..., 2), for trial sides ``side`` (±1)."""
    right = (side > 0).to(torch.float64)
    p_right_given_r = emission * right + (1.0 - emission) * (1.0 - right)
    p_right_given_l = (1.0 - emission) * right + emission * (1.0 - right)
    return torch.stack([p_right_given_l, p_right_given_r], dim=-1)


def _stimulus_likelihood(lam: Tensor, emission: float) -> Tensor:
    """P(observations | b) for b = (L, R), up to a common factor, of shape (..., 2), from λ."""
    r = torch.sigmoid(lam)
    given_left = (1.0 - emission) * r + emission * (1.0 - r)
    given_right = emission * r + (1.0 - emission) * (1.0 - r)
    return torch.stack([given_left, given_right], dim=-1)


def _stimulus_prior(rules: _FilterRules, predicted_bx2: Tensor, posterior_bx2: Tensor) -> Tensor:
    """π for the next trial from the predictive and filtered block marginals (per ``rules.prior``)."""
    q = rules.emission
    if rules.prior == "predictive_block":
        return predicted_bx2[:, 1]
    source = predicted_bx2 if rules.prior == "predictive" else posterior_bx2
    return source[:, 0] * (1.0 - q) + source[:, 1] * q


def _within_trial_cumsum(values: np.ndarray, first_row: np.ndarray, trial_row: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` restarting at each trial's first row, of shape (n_steps,)."""
    total = np.cumsum(values)
    before = total - values
    return total - before[first_row][trial_row]


def _scan_trials(
    rules: _FilterRules, lik_nx2: Tensor, session: Tensor, position: Tensor, n_sessions: int
) -> tuple[Tensor, Tensor]:
    """The block filter over trials, vectorised over sessions.

    ``lik_nx2`` (n_trials, 2): each trial's evidence about its block; ``session``, ``position``
    (n_trials,): its session and index in the session. Returns the predictive block marginals
    (n_sessions, N, 2) and the stimulus priors π (n_sessions, N).
    """
    n_max = int(position.max()) + 1
    lik_sxnx2 = torch.ones(n_sessions, n_max, 2, dtype=torch.float64)
    lik_sxnx2[session, position] = lik_nx2
    hazard_k = torch.as_tensor(rules.hazard, dtype=torch.float64)
    marginals = torch.empty(n_sessions, n_max, 2, dtype=torch.float64)
    priors = torch.empty(n_sessions, n_max, dtype=torch.float64)
    predicted = _initial_state(rules, n_sessions)
    filtered_marginal = predicted.sum(dim=-1)
    for j in range(n_max):
        marginal = predicted.sum(dim=-1)
        marginals[:, j] = marginal
        priors[:, j] = _stimulus_prior(rules, marginal, filtered_marginal)
        filtered = _normalise(predicted * lik_sxnx2[:, j, :, None])
        filtered_marginal = filtered.sum(dim=-1)
        predicted = _predict(filtered, hazard_k)
    return marginals, priors
