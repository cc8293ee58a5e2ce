"""How well a trained network does its job: emission fidelity, behaviour against Bayesian baselines."""
