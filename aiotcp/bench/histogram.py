"""Latency histograms: HdrHistogram at microsecond resolution, 3 significant digits, merged exactly.

Every histogram in a run has the same shape (:func:`new_histogram`), so merging is an element-wise sum of
the count arrays: the merge of the workers' histograms *is* the histogram of all samples, not an estimate.
Histograms cross process boundaries in HdrHistogram's own compressed encoding (:func:`encode` /
:func:`decode`), the same payload the interval log carries.

``HdrHistogram.record_value`` costs about a microsecond in pure Python, which at 150k requests/s would be
a sixth of the load generator's time. A :class:`Recorder` therefore appends integer microseconds to a short
buffer and folds it into its histogram in one pass: ``collections.Counter`` (C) counts equal values, and
each distinct value is added to its slot of the counts array with its count.
The buffer is flushed at least every tick of the engine and whenever it reaches :data:`FLUSH_AT` samples, so it never
holds more than a tick's worth of samples: never a list of the whole run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "FLUSH_AT",
    "HIGHEST_US",
    "LOWEST_US",
    "PERCENTILES",
    "SIGNIFICANT_DIGITS",
    "Recorder",
    "decode",
    "encode",
    "merge",
    "new_histogram",
    "summary_ms",
]

LOWEST_US = 1
#: Longest latency tracked: one hour. Longer samples are recorded as one hour (the run is bounded anyway).
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
#: A recorder folds its buffer into the histogram when it holds this many samples.
FLUSH_AT = 8192

#: Percentiles every report shows, with their JSON keys.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p75", 75.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
)


# The histogram's layout (lowest 1, 3 significant digits): 2048 sub-buckets, the upper 1024 of each bucket
# doubling in width. Values below 2048 are exact; a larger value's bucket is ``bit_length - 11``. The
# Recorder computes counts-array indexes itself with these (what ``record_value`` computes, minus its
# per-call overhead); the tests compare the result with ``record_value``'s, byte for byte.
_SUB_BUCKET_BITS = 11
_HALF = 1 << (_SUB_BUCKET_BITS - 1)


def new_histogram() -> Any:
    """An empty histogram of the one shape used everywhere in a bench run."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode(histogram: Any) -> str:
    """HdrHistogram's compressed, base64 encoding (what the interval log stores)."""
    return str(histogram.encode().decode("ascii"))


def decode(payload: str) -> Any:
    """A histogram from :func:`encode`'s output."""
    return HdrHistogram.decode(payload.encode("ascii"))


def merge(payloads: Iterable[str]) -> Any:
    """One histogram holding every sample of the encoded histograms: an exact, element-wise sum."""
    total = new_histogram()
    for payload in payloads:
        total.add(decode(payload))
    return total


def summary_ms(histogram: Any) -> dict[str, float | None]:
    """``p50 ... p99_9``, ``max``, ``min`` and ``mean`` in milliseconds; all ``None`` when empty."""
    keys = [name for name, _ in PERCENTILES] + ["max", "min", "mean"]
    if histogram.get_total_count() == 0:
        return dict.fromkeys(keys, None)
    values: dict[str, float | None] = {
        name: histogram.get_value_at_percentile(percentile) / 1000.0 for name, percentile in PERCENTILES
    }
    values["max"] = histogram.get_max_value() / 1000.0
    values["min"] = histogram.get_min_value() / 1000.0
    values["mean"] = round(histogram.get_mean_value() / 1000.0, 3)
    return values


class Recorder:
    """A histogram fed in batches: :meth:`add` is a list append; :meth:`flush` records the batch."""

    __slots__ = ("add", "buffer", "histogram")

    def __init__(self) -> None:
        self.histogram = new_histogram()
        self.buffer: list[int] = []
        #: Append one latency in integer microseconds. The caller flushes when ``len(buffer) >= FLUSH_AT``.
        self.add = self.buffer.append

    def __repr__(self) -> str:
        return f"<Recorder count={self.histogram.get_total_count()} buffered={len(self.buffer)}>"

    def flush(self) -> None:
        """Record the buffered samples (values above :data:`HIGHEST_US` are recorded as the highest)."""
        buffer = self.buffer
        if not buffer:
            return
        counts = Counter(buffer)  # C: equal values counted once
        buffer.clear()
        histogram = self.histogram
        low, high = min(counts), max(counts)
        slots: dict[int, int] = {}  # counts-array index -> count: many values share a slot
        get = slots.get
        for value, count in counts.items():
            if value > HIGHEST_US:
                value = HIGHEST_US
            shift = value.bit_length() - _SUB_BUCKET_BITS
            if shift < 0:
                shift = 0
            index = ((shift + 1) << (_SUB_BUCKET_BITS - 1)) + (value >> shift) - _HALF
            slots[index] = get(index, 0) + count
        array = histogram.counts
        total = 0
        for index, count in slots.items():
            array[index] += count
            total += count
        low, high = min(low, HIGHEST_US), min(high, HIGHEST_US)
        histogram.total_count += total
        histogram.min_value = min(histogram.min_value, low)
        histogram.max_value = max(histogram.max_value, high)

    def take(self) -> Any:
        """Flush, hand over the histogram and start an empty one (an interval ends)."""
        self.flush()
        histogram = self.histogram
        self.histogram = new_histogram()
        return histogram
