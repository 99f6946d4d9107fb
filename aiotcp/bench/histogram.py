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

Latencies by endpoint and status: a :class:`KeyedRecorder` keeps one such buffer per key
(``endpoint * 1000 + status``) and folds each into a :class:`Sparse`, the non-zero slots of a histogram's
counts array (a few hundred where a histogram has 23,552): small to keep per key and per interval, exact to
add. :class:`Appenders` gives the engines a key's append by a dict subscript. :func:`summary_ms` and
:meth:`Sparse.summary_ms` give the numbers HdrHistogram's own methods give, from tables per slot made once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import accumulate
from operator import mul
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "FLUSH_AT",
    "FOLD_AT",
    "HIGHEST_US",
    "Appenders",
    "LOWEST_US",
    "PERCENTILES",
    "SIGNIFICANT_DIGITS",
    "KeyedRecorder",
    "Recorder",
    "Sparse",
    "decode",
    "encode",
    "merge",
    "new_histogram",
    "percentiles_us",
    "summary_ms",
]

LOWEST_US = 1
#: Longest latency tracked: one hour. Longer samples are recorded as one hour (the run is bounded anyway).
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
#: A recorder folds its buffer into the histogram when it holds this many samples.
FLUSH_AT = 8192
#: The ticker folds a key's buffer of a :class:`KeyedRecorder` once it holds this many samples; the rest is
#: folded at the end of the interval. So at most this many samples per key wait in a list.
FOLD_AT = 1024

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


_TABLES: tuple[list[int], list[int], list[int]] | None = None


def _tables() -> tuple[list[int], list[int], list[int]]:
    """Per counts-array index of the one histogram shape: the value HdrHistogram reports for a percentile
    that lands there (the highest equivalent value), the one it uses for the mean (the median), and the
    lowest (the minimum's). Made once, so that :func:`summary_ms` costs a few passes of C over the counts,
    not a Python call per slot."""
    global _TABLES
    if _TABLES is None:
        histogram = new_histogram()
        values = [histogram.get_value_from_index(index) for index in range(histogram.counts_len)]
        highest = [histogram.get_highest_equivalent_value(value) for value in values]
        medians = [histogram._hdr_median_equiv_value(value) for value in values]
        _TABLES = (highest, medians, values)
    return _TABLES


def _index(value: int) -> int:
    """The counts-array index of ``value`` (microseconds, at most :data:`HIGHEST_US`)."""
    shift = value.bit_length() - _SUB_BUCKET_BITS
    if shift < 0:
        shift = 0
    return ((shift + 1) << (_SUB_BUCKET_BITS - 1)) + (value >> shift) - _HALF


def percentiles_us(histogram: Any, percentiles: Iterable[float]) -> list[int]:
    """The values at ``percentiles`` (each above 0), in microseconds, exactly as
    ``histogram.get_value_at_percentile`` gives them. The histogram must not be empty."""
    highest, _, _ = _tables()
    total = histogram.total_count
    cumulative = list(accumulate(histogram.counts[: histogram.counts_len]))
    found = []
    for percentile in percentiles:
        target = max(int(min(percentile, 100.0) * total / 100 + 0.5), 1)
        found.append(highest[min(bisect_left(cumulative, target), len(cumulative) - 1)])
    return found


def summary_ms(histogram: Any) -> dict[str, float | None]:
    """``p50 ... p99_9``, ``max``, ``min`` and ``mean`` in milliseconds; all ``None`` when empty.

    The values HdrHistogram's own methods give (``get_value_at_percentile``, ``get_mean_value``), computed
    in a few passes of C over the counts instead of a Python call per slot for each of them.
    """
    keys = [name for name, _ in PERCENTILES] + ["max", "min", "mean"]
    total = histogram.get_total_count()
    if total == 0:
        return dict.fromkeys(keys, None)
    found = percentiles_us(histogram, [percentile for _, percentile in PERCENTILES])
    values: dict[str, float | None] = {
        name: value / 1000.0 for (name, _), value in zip(PERCENTILES, found, strict=True)
    }
    values["max"] = histogram.get_max_value() / 1000.0
    values["min"] = histogram.get_min_value() / 1000.0
    _, medians, _ = _tables()
    weighted = sum(map(mul, histogram.counts[: histogram.counts_len], medians))
    values["mean"] = round(weighted / total / 1000.0, 3)
    return values


def _fold(buffer: list[int], slots: dict[int, int]) -> tuple[int, int, int]:
    """Add ``buffer``'s samples to ``slots`` (counts-array index -> count); their number, min and max (values
    above :data:`HIGHEST_US` count as the highest)."""
    counts = Counter(buffer)  # C: equal values counted once
    get = slots.get
    for value, count in counts.items():
        if value > HIGHEST_US:
            value = HIGHEST_US
        shift = value.bit_length() - _SUB_BUCKET_BITS
        if shift < 0:
            shift = 0
        index = ((shift + 1) << (_SUB_BUCKET_BITS - 1)) + (value >> shift) - _HALF
        slots[index] = get(index, 0) + count
    return len(buffer), min(min(counts), HIGHEST_US), min(max(counts), HIGHEST_US)


def _add_slots(histogram: Any, slots: dict[int, int], total: int, low: int, high: int) -> None:
    array = histogram.counts
    for index, count in slots.items():
        array[index] += count
    histogram.total_count += total
    histogram.min_value = min(histogram.min_value, low)
    histogram.max_value = max(histogram.max_value, high)


class Sparse:
    """Samples as the non-zero slots of a histogram's counts array, with their exact min and max.

    What a :class:`KeyedRecorder` keeps per key: a histogram's 23,552 slots are 184 kB, a key's latencies
    of one interval fill a few hundred. Adding two is exact, like adding histograms; :meth:`histogram`
    gives the HdrHistogram (for percentiles and encoding).
    """

    __slots__ = ("high", "low", "slots", "total")

    def __init__(self) -> None:
        self.slots: dict[int, int] = {}
        self.total = 0
        self.low = HIGHEST_US
        self.high = 0

    def __repr__(self) -> str:
        return f"<Sparse total={self.total} slots={len(self.slots)}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sparse):
            return NotImplemented
        return (self.slots, self.total, self.low, self.high) == (other.slots, other.total, other.low, other.high)

    def __getstate__(self) -> tuple[dict[int, int], int, int, int]:
        return self.slots, self.total, self.low, self.high

    def __setstate__(self, state: tuple[dict[int, int], int, int, int]) -> None:
        self.slots, self.total, self.low, self.high = state

    def fold(self, buffer: list[int]) -> None:
        """Record the samples of ``buffer`` (integer microseconds)."""
        if buffer:
            total, low, high = _fold(buffer, self.slots)
            self.total += total
            self.low = min(self.low, low)
            self.high = max(self.high, high)

    def add(self, other: Sparse) -> None:
        """Add ``other``'s samples to this one."""
        slots = self.slots
        get = slots.get
        for index, count in other.slots.items():
            slots[index] = get(index, 0) + count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def add_to(self, histogram: Any) -> None:
        """Add these samples to an HdrHistogram of :func:`new_histogram`'s shape."""
        if self.total:
            _add_slots(histogram, self.slots, self.total, self.low, self.high)

    def histogram(self) -> Any:
        """A new HdrHistogram holding these samples."""
        histogram = new_histogram()
        self.add_to(histogram)
        return histogram

    def summary_ms(self) -> dict[str, float | None]:
        """What :func:`summary_ms` gives for :meth:`histogram`, from the slots alone (no 23,552-slot pass)."""
        keys = [name for name, _ in PERCENTILES] + ["max", "min", "mean"]
        total = self.total
        if total == 0:
            return dict.fromkeys(keys, None)
        highest, medians, lowest = _tables()
        ordered = sorted(self.slots.items())
        values: dict[str, float | None] = {}
        seen = 0
        position = 0
        targets = [(name, max(int(percentile * total / 100 + 0.5), 1)) for name, percentile in PERCENTILES]
        for index, count in ordered:
            seen += count
            while position < len(targets) and seen >= targets[position][1]:
                values[targets[position][0]] = highest[index] / 1000.0
                position += 1
        values["max"] = highest[_index(self.high)] / 1000.0 if self.high else 0.0
        values["min"] = 0.0 if 0 in self.slots else lowest[_index(self.low)] / 1000.0
        values["mean"] = round(sum(count * medians[index] for index, count in ordered) / total / 1000.0, 3)
        return {key: values[key] for key in keys}

    @staticmethod
    def merged(parts: Iterable[Sparse]) -> Sparse:
        total = Sparse()
        for part in parts:
            total.add(part)
        return total


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
        slots: dict[int, int] = {}  # counts-array index -> count: many values share a slot
        total, low, high = _fold(buffer, slots)
        buffer.clear()
        _add_slots(self.histogram, slots, total, low, high)

    def take(self) -> Any:
        """Flush, hand over the histogram and start an empty one (an interval ends)."""
        self.flush()
        histogram = self.histogram
        self.histogram = new_histogram()
        return histogram


Append = Callable[[int], None]


class Appenders(dict[int, Append]):
    """``status -> append`` for one endpoint: the append of key ``base + status``, made by ``make(key)`` on
    first use. The engines' hot path is a subscript, ``appenders[status](latency)``: dict's own C lookup,
    with no arithmetic and no miss check (``__missing__`` runs once per status)."""

    __slots__ = ("base", "make")

    def __init__(self, base: int, make: Callable[[int], Append]) -> None:
        super().__init__()
        self.base = base
        self.make = make

    def __missing__(self, status: int) -> Append:
        append = self[status] = self.make(self.base + status)
        return append


class KeyedRecorder:
    """Latencies by an integer key, each key's samples buffered in a list of its own.

    The engines key a response by ``endpoint * 1000 + status``, so one list append files a latency under its
    endpoint and its status at once. :meth:`appender` gives a key's append (the lists live as long as the
    recorder: an engine may keep the appends it was given); :meth:`flush` folds the buffers into one
    :class:`Sparse` per key; :meth:`take` hands those over at the end of an interval and starts afresh.
    """

    __slots__ = ("appenders", "buffers", "sparse")

    def __init__(self) -> None:
        self.buffers: dict[int, list[int]] = {}
        #: A key's append, for the engines' hot paths: ``appenders.get(key)`` (None: ask :meth:`appender`).
        self.appenders: dict[int, Callable[[int], None]] = {}
        self.sparse: dict[int, Sparse] = {}

    def __repr__(self) -> str:
        buffered = sum(len(buffer) for buffer in self.buffers.values())
        return f"<KeyedRecorder keys={len(self.buffers)} buffered={buffered}>"

    def appender(self, key: int) -> Callable[[int], None]:
        """The append of ``key``'s buffer (made on first use)."""
        append = self.appenders.get(key)
        if append is None:
            buffer: list[int] = []
            self.buffers[key] = buffer
            append = self.appenders[key] = buffer.append
        return append

    def buffered(self) -> int:
        """Samples not yet folded (the h11 engine flushes when this reaches :data:`FLUSH_AT`)."""
        return sum(len(buffer) for buffer in self.buffers.values())

    def flush(self, at_least: int = 1) -> None:
        """Fold every buffer that holds ``at_least`` samples into its key's :class:`Sparse` (the ticker
        leaves short buffers for the end of the interval: folding costs per key, not only per sample)."""
        for key, buffer in self.buffers.items():
            if len(buffer) >= at_least:
                sparse = self.sparse.get(key)
                if sparse is None:
                    sparse = self.sparse[key] = Sparse()
                sparse.fold(buffer)
                buffer.clear()

    def take(self) -> dict[int, Sparse]:
        """Flush, and hand over every key's samples since the last take."""
        self.flush()
        taken = self.sparse
        self.sparse = {}
        return taken

    def clear(self) -> None:
        """Forget every sample so far (the warmup ended); the appends stay valid."""
        for buffer in self.buffers.values():
            buffer.clear()
        self.sparse = {}
