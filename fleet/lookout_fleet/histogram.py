"""Exact merging of lookout's latency histograms.

Each replay report carries ``latency_histograms_us``: per stage, the non-empty buckets of an HDR
histogram as ``[value_us, count]`` pairs (``value_us`` is the highest value of the bucket). Every
lookout histogram has the same layout (1 us .. 10 min, 3 significant digits), so the buckets of
many runs line up: adding their counts gives the histogram of all their samples together, and
its percentiles are exactly those of the concatenated samples at the layout's precision. (Averaging
per-bag percentiles, the usual shortcut, is wrong for every percentile but the mean.)

The percentile rule is lookout's own (``src/runtime/deadline.rs``, ``SparseHistogram``): for
quantile q of n samples, the first bucket at which the running count reaches max(1, ceil(q * n)).
"""

import math

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))


class LayoutMismatch(ValueError):
    """Two histograms with different layouts: they cannot be merged exactly."""


class Merged:
    """The sum of any number of one stage's sparse histograms."""

    def __init__(self):
        self.layout = None
        self.counts = {}

    def add(self, sparse, source="?"):
        """Adds one report's ``{significant_digits, highest_us, buckets}``."""
        layout = (int(sparse["significant_digits"]), int(sparse["highest_us"]))
        if self.layout is None:
            self.layout = layout
        elif layout != self.layout:
            raise LayoutMismatch(
                f"{source}: histogram layout {layout} differs from {self.layout} "
                "(significant digits, highest us); the reports come from different lookout versions"
            )
        for value, count in sparse["buckets"]:
            value, count = int(value), int(count)
            if value < 0 or count < 0:
                raise ValueError(f"{source}: negative bucket [{value}, {count}]")
            self.counts[value] = self.counts.get(value, 0) + count

    @property
    def count(self):
        return sum(self.counts.values())

    def value_at_quantile(self, q):
        """The value, us, at quantile ``q`` by lookout's rule (0 when empty)."""
        n = self.count
        if n == 0:
            return 0
        target = max(1, math.ceil(q * n))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= target:
                return value
        return max(self.counts)

    def percentiles_ms(self):
        """``{count, p50, p90, p99, p999, max}``, ms, as lookout's reports write them."""
        out = {"count": self.count}
        for name, q in QUANTILES:
            out[name] = self.value_at_quantile(q) / 1000.0
        out["max"] = (max(self.counts) if self.counts else 0) / 1000.0
        return out

    def sparse(self):
        """The merged histogram in the reports' own form (merges further)."""
        sd, hi = self.layout or (3, 0)
        return {
            "significant_digits": sd,
            "highest_us": hi,
            "buckets": [[v, self.counts[v]] for v in sorted(self.counts)],
        }


def merge_stages(reports):
    """``{stage: Merged}`` over ``[(name, report dict)]``; reports without histograms add nothing."""
    stages = {}
    for name, report in reports:
        for stage, sparse in (report.get("latency_histograms_us") or {}).items():
            stages.setdefault(stage, Merged()).add(sparse, source=name)
    return stages
