"""Server-side aggregation of stacked client updates: FedAvg, row-wise FedAvg, median, trimmed mean, norm bound, Krum.

Conventions shared by every function here:

* An update of one parameter tensor of shape ``S`` from ``C`` clients is stacked as ``updates`` of shape ``(C, *S)``;
  a whole model update is a ``dict[str, Tensor]`` of such stacks, all with the same ``C``.
* ``weights`` ``(C,)`` are the clients' example counts (any non-negative numbers with a positive sum).
* Aggregates have shape ``S`` and the dtype of ``updates`` (float32 and float64 are supported). Sums are accumulated
  in float64 over clients in index order, so results are deterministic (no BLAS reductions, no atomics) and, for
  float32 inputs, rounded once.
* Updates must be finite; a client that sends ``nan``/``inf`` should be rejected before aggregation.
* :class:`~ffmrec.errors.ConfigError` is raised for settings a user chose (``trim_ratio``, ``max_norm``,
  ``num_malicious``, ``multi``); :class:`ValueError` for malformed tensors, which are programming errors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from fractions import Fraction

import torch

from ffmrec.errors import ConfigError
from ffmrec.utils.checks import check_int

_ACC = torch.float64  # accumulation dtype


# --------------------------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------------------------


def _check_stack(updates: torch.Tensor, name: str = "updates") -> int:
    """Return ``C`` after checking ``updates`` is a floating tensor ``(C, *S)`` with ``C >= 1``."""
    if not isinstance(updates, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape (C, ...), got {type(updates).__name__}; "
                         "stack the clients' tensors with torch.stack.")
    if updates.dim() == 0 or updates.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (C, ...) with C >= 1 clients, got shape {tuple(updates.shape)}; "
                         "aggregate only rounds with at least one result.")
    if not updates.is_floating_point():
        raise ValueError(f"`{name}` must be floating point, got dtype {updates.dtype}; cast it with .float().")
    return updates.shape[0]


def _check_weights(weights: torch.Tensor, num_clients: int) -> torch.Tensor:
    """Return ``weights`` as float64 ``(C,)`` after checking it is finite, non-negative, with a positive sum."""
    weights = torch.as_tensor(weights)
    if weights.shape != (num_clients,):
        raise ValueError(f"`weights` must have shape ({num_clients},), one per client, got {tuple(weights.shape)}; "
                         "pass each client's number of examples.")
    weights = weights.to(_ACC)
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"`weights` must be finite and >= 0, got {weights.tolist()}; "
                         "pass each client's number of examples.")
    if float(weights.sum()) <= 0:
        raise ValueError(f"`weights` must have a positive sum, got {weights.tolist()}; "
                         "drop the round or give at least one client a positive number of examples.")
    return weights


def _check_real(value: object, name: str) -> float:
    """``value`` as a finite float, rejecting bools, strings and nan/inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ConfigError(f"`{name}` must be a real number, got {value!r}; set it to a number.")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"`{name}` must be finite, got {value}; set it to a finite number.")
    return value


def _check_dict(updates: Mapping[str, torch.Tensor]) -> int:
    """Return the common ``C`` of a non-empty dict of stacked updates."""
    if not isinstance(updates, Mapping) or len(updates) == 0:
        raise ValueError(f"`updates` must be a non-empty dict of stacked tensors (C, ...), got {updates!r}; "
                         "pass {parameter_name: torch.stack(client_tensors)}.")
    counts = {name: _check_stack(t, f"updates[{name!r}]") for name, t in updates.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"all stacks in `updates` must have the same number of clients C, got {counts}; "
                         "stack every parameter over the same clients in the same order.")
    return next(iter(counts.values()))


def _mean_over_clients(updates: torch.Tensor) -> torch.Tensor:
    """Unweighted mean over dim 0, accumulated in float64 in client order."""
    acc = torch.zeros(updates.shape[1:], dtype=_ACC, device=updates.device)
    for c in range(updates.shape[0]):
        acc += updates[c]
    return (acc / updates.shape[0]).to(updates.dtype)


# --------------------------------------------------------------------------------------------------------------------
# Averaging
# --------------------------------------------------------------------------------------------------------------------


class WeightedSum:
    """The running example-weighted sum of client updates: the one weighted mean of ffmrec.

    Every engine and strategy averages through it: clients (or partial sums of clients, e.g. a fused chunk or a
    SuperNode's cohort) are added in client order, accumulated in float64, and :meth:`mean` divides once::

        mean = sum_c n_c * u_c / sum_c n_c        (McMahan et al., AISTATS 2017)
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weight = 0.0
        self.loss = 0.0  # sum_c n_c * loss_c
        self.count = 0  # clients added

    def add(self, update: Mapping[str, torch.Tensor], weight: float, loss: float = 0.0) -> None:
        """One client's update ``u_c`` with weight ``n_c``."""
        self.add_sum({k: v.to(_ACC) * float(weight) for k, v in update.items()}, float(weight), float(weight) * loss, 1)

    def add_stacked(self, stacked: Mapping[str, torch.Tensor], weights: torch.Tensor,
                    losses: torch.Tensor | None = None) -> None:
        """Clients' updates stacked ``(C, *S)`` with weights ``(C,)``, in client order."""
        w = torch.as_tensor(weights, dtype=_ACC)
        sums = {k: torch.tensordot(w, v.to(_ACC), dims=1) for k, v in stacked.items()}
        loss = float((w * torch.as_tensor(losses, dtype=_ACC)).sum()) if losses is not None else 0.0
        self.add_sum(sums, float(w.sum()), loss, len(w))

    def add_sum(self, weighted: Mapping[str, torch.Tensor], weight: float, loss_sum: float = 0.0,
                count: int = 1) -> None:
        """A partial sum ``sum_c n_c * u_c`` over ``count`` clients whose weights add up to ``weight``."""
        for k, v in weighted.items():
            v = v.to(_ACC)
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.weight += float(weight)
        self.loss += float(loss_sum)
        self.count += int(count)

    def mean(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        if self.weight <= 0:
            raise ValueError("the weighted mean of no clients (total weight 0) is undefined; aggregate only rounds "
                             "with at least one result.")
        return {k: (v / self.weight).to(dtype) for k, v in self.sums.items()}

    @property
    def mean_loss(self) -> float:
        return self.loss / self.weight if self.weight > 0 else float("nan")


def weighted_mean(updates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Example-weighted mean of client updates (FedAvg).

    McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data", AISTATS 2017:
    ``sum_c n_c * u_c / sum_c n_c``, through :class:`WeightedSum`.

    Args:
        updates: ``(C, *S)`` stacked client updates.
        weights: ``(C,)`` non-negative client weights (example counts) with a positive sum.

    Returns:
        ``(*S)`` aggregate, in the dtype of ``updates``.
    """
    num_clients = _check_stack(updates)
    w = _check_weights(weights, num_clients)
    acc = WeightedSum()
    acc.add_stacked({"u": updates}, w)
    return acc.mean(updates.dtype)["u"]


def rowwise_weighted_mean(updates: torch.Tensor, weights: torch.Tensor, touched: torch.Tensor) -> torch.Tensor:
    """Per-row FedAvg for embedding tables: each row averages only the clients that touched it.

    In federated recommendation a client trains only the item (or user) rows it saw; averaging its untouched rows,
    which carry no information, with full weight would shrink every row's update towards zero in proportion to how
    rarely the item occurs. Row ``r`` is therefore the FedAvg (McMahan et al., AISTATS 2017) over the clients
    ``T_r = {c : touched[c, r]}``, with weights renormalised per row::

        out[r] = sum_{c in T_r} n_c * u_c[r] / sum_{c in T_r} n_c

    A row touched by no client, or only by clients of weight 0, gets a zero update. Values of untouched rows are
    ignored entirely (even ``nan``).

    Args:
        updates: ``(C, R, *D)`` stacked client updates of a table with ``R`` rows (usually ``D = (d,)``).
        weights: ``(C,)`` non-negative client weights (example counts) with a positive sum.
        touched: ``(C, R)`` bool, ``True`` where the client updated the row.

    Returns:
        ``(R, *D)`` aggregate, in the dtype of ``updates``.
    """
    num_clients = _check_stack(updates)
    w = _check_weights(weights, num_clients)
    if updates.dim() < 2:
        raise ValueError(f"`updates` must have shape (C, R, ...) for a table of R rows, got {tuple(updates.shape)}; "
                         "use weighted_mean for vectors.")
    num_rows = updates.shape[1]
    if not isinstance(touched, torch.Tensor) or touched.dtype != torch.bool or touched.shape != (num_clients, num_rows):
        got = (f"shape {tuple(touched.shape)} dtype {touched.dtype}" if isinstance(touched, torch.Tensor)
               else repr(touched))
        raise ValueError(f"`touched` must be a bool tensor of shape ({num_clients}, {num_rows}), got {got}; "
                         "mark with True the rows each client updated.")
    row_view = (num_rows,) + (1,) * (updates.dim() - 2)  # broadcasts (R,) over (R, *D)
    acc = torch.zeros(updates.shape[1:], dtype=_ACC, device=updates.device)  # (R, *D)
    denom = torch.zeros(num_rows, dtype=_ACC, device=updates.device)  # (R,)
    for c in range(num_clients):
        mask = touched[c].to(updates.device)  # (R,)
        acc += torch.where(mask.view(row_view), w[c] * updates[c].to(_ACC), 0.0)
        denom += w[c] * mask
    has_weight = denom > 0  # (R,)
    safe = torch.where(has_weight, denom, 1.0).view(row_view)
    out = torch.where(has_weight.view(row_view), acc / safe, 0.0)
    return out.to(updates.dtype)


# --------------------------------------------------------------------------------------------------------------------
# Coordinate-wise robust statistics
# --------------------------------------------------------------------------------------------------------------------


def coordinate_median(updates: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of client updates.

    Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018 (Option I,
    median-based gradient descent). For an even number of clients ``C`` the median of a coordinate is the mean of its
    two middle values (``torch.median`` would return the lower one, biasing the aggregate downwards). Unweighted: each
    client counts once whatever its number of examples, as in the paper.

    Args:
        updates: ``(C, *S)`` stacked client updates.

    Returns:
        ``(*S)`` median, in the dtype of ``updates``.
    """
    num_clients = _check_stack(updates)
    ordered = torch.sort(updates, dim=0).values  # (C, *S)
    if num_clients % 2 == 1:
        return ordered[num_clients // 2].clone()
    lower = ordered[num_clients // 2 - 1].to(_ACC)
    upper = ordered[num_clients // 2].to(_ACC)
    return ((lower + upper) / 2).to(updates.dtype)


def trim_count(num_clients: int, trim_ratio: float) -> int:
    """``floor(trim_ratio * num_clients)``, the number of values dropped at each end by :func:`trimmed_mean`.

    The product is taken on the decimal value of ``trim_ratio`` (``0.29 * 100`` is 29, not 28 as in floats).
    """
    num_clients = check_int(num_clients, "num_clients", 1)
    trim_ratio = _check_real(trim_ratio, "trim_ratio")
    if not 0 <= trim_ratio < 0.5:
        raise ConfigError(f"`trim_ratio` must satisfy 0 <= trim_ratio < 0.5, got {trim_ratio}; it is the fraction "
                          "of clients dropped at EACH end per coordinate, e.g. 0.1 drops the top and bottom 10%.")
    k = math.floor(Fraction(repr(trim_ratio)) * num_clients)
    if num_clients - 2 * k < 1:  # unreachable for trim_ratio < 0.5; kept as a guard on the contract
        raise ConfigError(f"`trim_ratio`={trim_ratio} with {num_clients} clients trims {k} values at each end and "
                          "leaves none; lower trim_ratio.")
    return k


def trimmed_mean(updates: torch.Tensor, trim_ratio: float) -> torch.Tensor:
    """Coordinate-wise trimmed mean of client updates.

    Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018 (Option II):
    per coordinate, drop the ``k = floor(trim_ratio * C)`` largest and ``k`` smallest values and average the remaining
    ``C - 2k``. Unweighted, as in the paper. ``trim_ratio = 0`` is the plain mean; a positive ratio that trims nothing
    for this ``C`` warns, since the defence is then a no-op.

    Args:
        updates: ``(C, *S)`` stacked client updates.
        trim_ratio: fraction trimmed at each end, ``0 <= trim_ratio < 0.5``.

    Returns:
        ``(*S)`` trimmed mean, in the dtype of ``updates``.
    """
    num_clients = _check_stack(updates)
    k = trim_count(num_clients, trim_ratio)
    if k == 0:
        if trim_ratio > 0:
            warnings.warn(f"trim_ratio={trim_ratio} trims floor({trim_ratio} * {num_clients}) = 0 clients per end, "
                          f"so trimmed_mean is the plain mean; use trim_ratio >= {1 / num_clients:.3g} or more "
                          "clients per round to trim anything.", UserWarning, stacklevel=2)
        return _mean_over_clients(updates)
    kept = torch.sort(updates, dim=0).values[k:num_clients - k]  # (C - 2k, *S)
    return _mean_over_clients(kept)


# --------------------------------------------------------------------------------------------------------------------
# Norm bounding
# --------------------------------------------------------------------------------------------------------------------


def client_update_norms(updates: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Global L2 norm of each client's whole update, across all parameters.

    Args:
        updates: ``{name: (C, *S_name)}`` stacked updates, or a single ``(C, *S)`` stack.

    Returns:
        ``(C,)`` float64 norms ``sqrt(sum_name ||u_c[name]||^2)``.
    """
    stacks = {"updates": updates} if isinstance(updates, torch.Tensor) else updates
    num_clients = _check_dict(stacks)
    device = next(iter(stacks.values())).device
    sq = torch.zeros(num_clients, dtype=_ACC, device=device)  # (C,)
    for stack in stacks.values():
        flat = stack.reshape(num_clients, -1)  # (C, D_name)
        for c in range(num_clients):
            v = flat[c].to(_ACC)
            sq[c] += torch.dot(v, v) if v.numel() else 0.0
    return sq.sqrt()


def norm_bounded(updates: Mapping[str, torch.Tensor] | torch.Tensor,
                 max_norm: float) -> dict[str, torch.Tensor] | torch.Tensor:
    """Scale each client's whole update down to global L2 norm at most ``max_norm`` (norm bounding).

    Sun et al., "Can You Really Backdoor Federated Learning?", arXiv:1911.07963, 2019: the server clips every update
    ``u_c`` to ``u_c * min(1, M / ||u_c||)`` before averaging, bounding what one client can move the model. The norm is
    taken over all parameters together (see :func:`client_update_norms`), so every tensor of a client is scaled by the
    same factor and the update's direction is kept. Updates already inside the ball are returned bit-for-bit unchanged;
    clipped ones have norm ``max_norm`` up to rounding (relative error ~1e-7 in float32).

    Args:
        updates: ``{name: (C, *S_name)}`` stacked updates, or a single ``(C, *S)`` stack (treated as the whole update).
        max_norm: the bound ``M > 0``.

    Returns:
        Clipped updates, same structure, shapes and dtypes as ``updates``; the caller averages them.
    """
    max_norm = _check_real(max_norm, "max_norm")
    if max_norm <= 0:
        raise ConfigError(f"`max_norm` must be > 0, got {max_norm}; set it to a positive L2 bound, e.g. the median "
                          "update norm of a clean round.")
    norms = client_update_norms(updates)  # (C,)
    factors = torch.where(norms > max_norm, max_norm / norms, 1.0)  # (C,) float64

    def clip(stack: torch.Tensor) -> torch.Tensor:
        scale = factors.view((-1,) + (1,) * (stack.dim() - 1))
        return (stack.to(_ACC) * scale).to(stack.dtype)

    if isinstance(updates, torch.Tensor):
        return clip(updates)
    return {name: clip(stack) for name, stack in updates.items()}


# --------------------------------------------------------------------------------------------------------------------
# Krum
# --------------------------------------------------------------------------------------------------------------------


def pairwise_sq_distances(updates_flat: torch.Tensor) -> torch.Tensor:
    """Exact squared Euclidean distances ``(C, C)`` (float64) between the rows of ``updates_flat`` ``(C, D)``.

    Computed as ``sum((x_i - x_j)^2)`` rather than through ``torch.cdist``'s matrix-product shortcut, so the result is
    exactly symmetric, exactly zero between identical rows and never negative.
    """
    num_clients = _check_stack(updates_flat, "updates_flat")
    if updates_flat.dim() != 2:
        raise ValueError(f"`updates_flat` must have shape (C, D), got {tuple(updates_flat.shape)}; "
                         "flatten a dict of updates with flatten_updates.")
    x = updates_flat.to(_ACC)
    dist = torch.zeros(num_clients, num_clients, dtype=_ACC, device=x.device)
    block = max(1, (1 << 24) // max(1, x.shape[1]))  # rows per step: at most ~16M float64 differences in memory
    for i in range(num_clients):
        for start in range(i + 1, num_clients, block):
            diff = x[start:start + block] - x[i]  # (b, D)
            d = (diff * diff).sum(dim=1)
            dist[i, start:start + len(d)] = d
            dist[start:start + len(d), i] = d
    return dist


def krum_scores(updates_flat: torch.Tensor, num_malicious: int) -> torch.Tensor:
    """Krum score of each client: the sum of squared distances to its ``C - f - 2`` nearest other clients.

    Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017, with
    ``f = num_malicious``. Requires ``C > 2f + 2``.

    Returns:
        ``(C,)`` float64 scores.
    """
    num_clients = _check_stack(updates_flat, "updates_flat")
    f = check_int(num_malicious, "num_malicious", 0)
    if num_clients <= 2 * f + 2:
        raise ConfigError(f"Krum needs more than 2 * num_malicious + 2 clients per round, got {num_clients} clients "
                          f"with `num_malicious`={f} (needs > {2 * f + 2}); lower num_malicious to at most "
                          f"{max((num_clients - 3) // 2, 0)} or sample at least {2 * f + 3} clients per round.")
    dist = pairwise_sq_distances(updates_flat)  # (C, C)
    dist.fill_diagonal_(math.inf)  # a client is not its own neighbour
    nearest = torch.sort(dist, dim=1).values[:, : num_clients - f - 2]  # (C, C - f - 2)
    return nearest.sum(dim=1)


def krum(updates_flat: torch.Tensor, num_malicious: int, multi: int = 1) -> torch.Tensor:
    """Indices of the client(s) selected by (Multi-)Krum.

    Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017: with
    ``C`` clients of which at most ``f = num_malicious`` are Byzantine (``C > 2f + 2``), client ``i`` scores
    ``s(i) = sum_{i -> j} ||V_i - V_j||^2`` over its ``C - f - 2`` nearest neighbours; Krum selects the lowest score,
    Multi-Krum the ``multi`` lowest (``multi = C`` selects everyone, i.e. plain averaging). Ties go to the lower index.

    Args:
        updates_flat: ``(C, D)`` flattened client updates (see :func:`flatten_updates`).
        num_malicious: assumed number of Byzantine clients ``f >= 0``.
        multi: number of clients to select, ``1 <= multi <= C``.

    Returns:
        ``(multi,)`` int64 client indices, by increasing score.
    """
    scores = krum_scores(updates_flat, num_malicious)
    num_clients = scores.shape[0]
    multi = check_int(multi, "multi", 1)
    if multi > num_clients:
        raise ConfigError(f"`multi` must be at most the number of clients ({num_clients}), got {multi}; "
                          f"set multi <= {num_clients} (multi = 1 is Krum).")
    order = torch.sort(scores, stable=True).indices  # stable: equal scores keep index order
    return order[:multi].clone()


# --------------------------------------------------------------------------------------------------------------------
# Dict <-> flat
# --------------------------------------------------------------------------------------------------------------------


def update_shapes(updates: Mapping[str, torch.Tensor]) -> dict[str, torch.Size]:
    """Per-client shape of each stacked parameter, ``{name: S_name}``, for :func:`unflatten_updates`."""
    _check_dict(updates)
    return {name: stack.shape[1:] for name, stack in updates.items()}


def flatten_updates(updates: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate ``{name: (C, *S_name)}`` into ``(C, D)``, ``D = sum_name prod(S_name)``, in the dict's order."""
    num_clients = _check_dict(updates)
    dtypes = {name: stack.dtype for name, stack in updates.items()}
    if len(set(dtypes.values())) != 1:
        raise ValueError(f"all stacks in `updates` must share one dtype to be flattened, got {dtypes}; "
                         "cast them to a common dtype first.")
    return torch.cat([stack.reshape(num_clients, -1) for stack in updates.values()], dim=1)


def unflatten_updates(updates_flat: torch.Tensor, shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten_updates`: split ``(C, D)`` into ``{name: (C, *shapes[name])}`` in ``shapes``' order.

    Also accepts a single flat vector ``(D,)`` (e.g. a Krum-selected aggregate) and returns ``{name: shapes[name]}``.
    """
    if not isinstance(updates_flat, torch.Tensor) or updates_flat.dim() not in (1, 2):
        got = tuple(updates_flat.shape) if isinstance(updates_flat, torch.Tensor) else repr(updates_flat)
        raise ValueError(f"`updates_flat` must have shape (C, D) or (D,), got {got}; pass flatten_updates' output.")
    sizes = [math.prod(shape) for shape in shapes.values()]
    if sum(sizes) != updates_flat.shape[-1]:
        raise ValueError(f"`shapes` hold {sum(sizes)} values per client but `updates_flat` has "
                         f"{updates_flat.shape[-1]}; pass the update_shapes of the dict that was flattened.")
    lead = tuple(updates_flat.shape[:-1])
    pieces = torch.split(updates_flat, sizes, dim=-1)
    return {name: piece.reshape(lead + tuple(shape)) for (name, shape), piece in zip(shapes.items(), pieces)}
