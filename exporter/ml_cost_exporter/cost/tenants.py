"""Cost per tenant: each model's interval cost shared among the tenants a gateway counted tokens for.

Every dollar of a model covered by a gateway goes to exactly one tenant bucket:
a tracked tenant, `other` (tenants beyond max_tenants, since tenant labels are
unbounded in the wild) or `unattributed` (an interval in which the gateway
counted no tokens for the model: idle capacity, shown apart as OpenCost shows
__idle__). Prefill dollars follow the tenants' input tokens and decode dollars
their output tokens, so a tenant of long prompts and short answers pays for
what it uses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ml_cost_exporter.config.tokens import OVERFLOW_TENANT, UNATTRIBUTED_TENANT
from ml_cost_exporter.config.units import ModelKey
from ml_cost_exporter.cost.ledger import IntervalCost
from ml_cost_exporter.cost.tokens import state_rows

UNKNOWN_TENANT = "unknown"  # tokens counted without a tenant label value
MAX_TENANT_LENGTH = 128
STATE_VERSION = 1
# The gateway's token kinds, named as mlcost_tokens_total names them.
EXPORTED_KIND = {"input": "prompt", "output": "generation", "total": "total"}
PHASE_KIND = {"prefill": "input", "decode": "output"}


def tenant_name(raw: str) -> str:
    """The tenant a label value names: bounded in length, empty or LiteLLM's "None" is unknown."""
    value = raw[:MAX_TENANT_LENGTH]
    return UNKNOWN_TENANT if value in ("", "None") else value


@dataclass(frozen=True)
class TenantSnapshot:
    usd_total: Mapping[tuple[str, str, str], float]  # (model, version, tenant)
    tokens_total: Mapping[tuple[str, str, str, str], float]  # (model, version, tenant, kind)
    tracked: int
    limit: int


class TenantLedger:
    """Thread-safe per-tenant cost and token counters, bounded in tenants (checkpoint section "tenants")."""

    def __init__(self, models: Iterable[ModelKey], max_tenants: int, pinned: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._usd: dict[tuple[str, str, str], float] = {}
        self._tokens: dict[tuple[str, str, str, str], float] = {}
        self._tracked: dict[str, None] = {}  # insertion-ordered set: first come, first tracked
        self.reconfigure(models, max_tenants, pinned)

    def reconfigure(self, models: Iterable[ModelKey], max_tenants: int, pinned: Iterable[str] = ()) -> None:
        """Adopt a new config; budgets' tenants are always tracked, so no explosion can push them out."""
        keep = set(models)
        with self._lock:
            self._models = keep
            self._max = max_tenants
            self._usd = {k: v for k, v in self._usd.items() if (k[0], k[1]) in keep}
            self._tokens = {k: v for k, v in self._tokens.items() if (k[0], k[1]) in keep}
            for tenant in pinned:
                self._tracked.setdefault(tenant_name(tenant), None)

    def _bucket(self, tenant: str) -> str:
        if tenant in self._tracked:
            return tenant
        if len(self._tracked) < self._max:
            self._tracked[tenant] = None
            return tenant
        return OVERFLOW_TENANT

    def record(self, interval: IntervalCost, phases: Mapping[ModelKey, Mapping[str, float]],
               tokens: Mapping[tuple[ModelKey, str, str], float],
               covered: Iterable[ModelKey]) -> dict[ModelKey, dict[str, float]]:
        """Share each covered model's interval cost by its tenants' tokens; returns the tenant dollars."""
        per_model: dict[ModelKey, dict[str, dict[str, float]]] = {}
        for (key, raw_tenant, kind), value in tokens.items():
            if value > 0 and kind in EXPORTED_KIND:
                per_model.setdefault(key, {}).setdefault(tenant_name(raw_tenant), {})[kind] = value
        charged: dict[ModelKey, dict[str, float]] = {}
        with self._lock:
            for key in sorted(set(covered) & self._models & set(interval.by_model)):
                buckets = self._buckets(key, per_model.get(key, {}))
                usd = sum(interval.by_model.get(key, {}).values())
                parts = phases.get(key) or {"all": usd}
                shares: dict[str, float] = {}
                for part, part_usd in parts.items():
                    for tenant, value in _split(part_usd, buckets, PHASE_KIND.get(part)).items():
                        shares[tenant] = shares.get(tenant, 0.0) + value
                for tenant, value in shares.items():
                    self._usd[(*key, tenant)] = self._usd.get((*key, tenant), 0.0) + value
                charged[key] = shares
        return charged

    def _buckets(self, key: ModelKey, tenants: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Tenants' tokens folded into tracked tenants and `other`; the busiest are tracked first."""
        buckets: dict[str, dict[str, float]] = {}
        for tenant, kinds in sorted(tenants.items(), key=lambda item: (-sum(item[1].values()), item[0])):
            name = self._bucket(tenant)
            bucket = buckets.setdefault(name, {})
            for kind, value in kinds.items():
                bucket[kind] = bucket.get(kind, 0.0) + value
                counter = (*key, name, EXPORTED_KIND[kind])
                self._tokens[counter] = self._tokens.get(counter, 0.0) + value
        return buckets

    def snapshot(self) -> TenantSnapshot:
        with self._lock:
            return TenantSnapshot(dict(self._usd), dict(self._tokens), len(self._tracked), self._max)

    # --- checkpoint (a section of the --storage.path checkpoint) -----------------
    def export_state(self) -> dict:
        with self._lock:
            return {
                "version": STATE_VERSION,
                "tracked": list(self._tracked),
                "usd": [[*key, value] for key, value in sorted(self._usd.items())],
                "tokens": [[*key, value] for key, value in sorted(self._tokens.items())],
            }

    def restore_state(self, state: dict) -> None:
        """Adopt a checkpoint written by export_state; ValueError naming the field on anything malformed."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"tenants: expected a mapping with version {STATE_VERSION}")
        tracked = state.get("tracked", [])
        if not isinstance(tracked, list) or not all(isinstance(t, str) for t in tracked):
            raise ValueError("tenants.tracked: expected a list of strings")
        usd = state_rows(state, "usd", 3, "tenants")
        tokens = state_rows(state, "tokens", 4, "tenants")
        if any(row[3] not in EXPORTED_KIND.values() for row in tokens):
            raise ValueError("tenants.tokens: kind must be prompt, generation or total")
        with self._lock:
            for tenant in tracked:
                if len(self._tracked) >= self._max:
                    break
                self._tracked.setdefault(tenant_name(tenant), None)
            self._usd = {tuple(r[:3]): r[3] for r in usd if (r[0], r[1]) in self._models}
            self._tokens = {tuple(r[:4]): r[4] for r in tokens if (r[0], r[1]) in self._models}


def _split(usd: float, buckets: dict[str, dict[str, float]], kind: str | None) -> dict[str, float]:
    """`usd` shared by the buckets' tokens of `kind`, else of all kinds; none at all: unattributed."""
    weights = {t: kinds.get(kind, 0.0) for t, kinds in buckets.items()} if kind else {}
    if sum(weights.values()) <= 0:
        weights = {t: kinds.get("total", kinds.get("input", 0.0) + kinds.get("output", 0.0))
                   for t, kinds in buckets.items()}
    total = sum(weights.values())
    if total <= 0:
        return {UNATTRIBUTED_TENANT: usd}
    return {t: usd * w / total for t, w in weights.items() if w > 0}

