"""Evaluation against retrained ground truth: LDS, counterfactual removal, and the baselines."""
