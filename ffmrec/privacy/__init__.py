"""Personality preservation: measure what a curious server learns about each user's sensitive traits from what the
devices shared, and the defences' budgets.

``traits`` (gender, age group, occupation from the user attributes; labels only, never seen by the server or the
model), ``attacks`` (attribute inference on the recorder's files and on the raw interactions, the ceiling),
``metrics`` (AUC, balanced accuracy, macro AUC, bootstrap intervals, permutation p-values), ``report``
(``ffmrec attack RUN_DIR``) and ``accounting`` (epsilon of local and central DP from ``dp_accounting``). The defences
themselves are client-side transforms (:mod:`ffmrec.federated.transforms`) and strategy wrappers
(:mod:`ffmrec.federated.strategies.central_dp`), so they compose with every recipe.
"""
