"""Virtual-time model of one vLLM replica.

A replica follows the vLLM V1 scheduler in outline. It batches continuously
up to `max_num_seqs` and keeps a KV cache of fixed-size blocks. Prefill is
chunked up to `max_num_batched_tokens` per iteration, and the newest
running request is preempted and recomputed when a decode step cannot get
a block. A request is
admitted only when blocks for its whole prompt are free (first come, first
served, so a large head request blocks the queue). The iteration time in ms
is `step_base + step_per_seq * scheduled + step_per_1k_ctx * context / 1000
+ prefill_per_token * prefill_tokens`, with coefficients from
`data/accelerators.csv`.

Speed: requests in their decode phase share one step counter, so their
context lengths, finish steps and block needs are kept as offsets from it.
Between events (an arrival, a finish, a block shortage, a timeout or the
end of the advance) the batch does not change, and any number of decode
iterations are advanced in O(1) time instead of one by one. A plan made
once per batch (next finish, first block shortage, prefix sums of block
needs) serves every advance until the batch changes, and the inter-token
latencies of those iterations enter the histogram in one update when it
does or when `counters` is read.

Determinism: a replica draws no random numbers.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

# A request with no first token this many seconds after its arrival is
# cancelled by its client and counted as timed out.
FIRST_TOKEN_TIMEOUT_S = 60.0

TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
# Bounds in tokens of the per-request prompt and generation histograms: vLLM
# uses the 1-2-5 series up to max_model_len, here up to the demo's 8192.
REQUEST_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True)
class AcceleratorProfile:
    """Cost and iteration-time coefficients of one GPU type for Llama-3.1-8B."""

    name: str
    usd_per_gpu_hour: float
    step_base_ms: float
    step_per_seq_ms: float
    step_per_1k_ctx_ms: float
    prefill_per_token_ms: float
    kv_tokens: int

    def step_ms(
        self, scheduled: int, context_tokens: int, prefill_tokens: int
    ) -> float:
        """Return the duration of one engine iteration in ms."""
        return (
            self.step_base_ms
            + self.step_per_seq_ms * scheduled
            + self.step_per_1k_ctx_ms * context_tokens / 1000.0
            + self.prefill_per_token_ms * prefill_tokens
        )


def load_accelerators(path: Path) -> dict[str, AcceleratorProfile]:
    """Read `accelerators.csv` into profiles keyed by accelerator name."""
    profiles: dict[str, AcceleratorProfile] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            profiles[row["accelerator"]] = AcceleratorProfile(
                name=row["accelerator"],
                usd_per_gpu_hour=float(row["usd_per_gpu_hour"]),
                step_base_ms=float(row["step_base_ms"]),
                step_per_seq_ms=float(row["step_per_seq_ms"]),
                step_per_1k_ctx_ms=float(row["step_per_1k_ctx_ms"]),
                prefill_per_token_ms=float(row["prefill_per_token_ms"]),
                kv_tokens=int(row["kv_tokens_llama31_8b"]),
            )
    return profiles


@dataclass(frozen=True)
class EngineConfig:
    """vLLM engine settings of one replica."""

    max_num_seqs: int = 256
    max_model_len: int = 8192
    max_num_batched_tokens: int = 2048
    block_size: int = 16

    def __post_init__(self) -> None:
        if min(self.max_num_seqs, self.max_model_len, self.block_size) < 1:
            raise ValueError(f"engine settings must be positive: {self}")
        # vLLM raises the same error: every running sequence must be able to
        # decode one token per iteration.
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                "max_num_batched_tokens must be at least max_num_seqs, got "
                f"{self.max_num_batched_tokens} < {self.max_num_seqs}"
            )


class RequestState(Enum):
    WAITING = "waiting"
    PREFILL = "prefill"
    DECODE = "decode"
    DONE = "done"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    REJECTED = "rejected"


class Request:
    """One inference request and its progress on a replica."""

    __slots__ = (
        "rid", "arrival", "prompt", "output", "generated", "state",
        "first_token_at", "finished_at", "target", "ctx", "base", "finish_step",
        "epoch",
    )  # fmt: skip

    def __init__(self, rid: int, arrival: float, prompt: int, output: int) -> None:
        self.rid = rid
        self.arrival = arrival
        self.prompt = prompt
        self.output = max(1, output)
        self.generated = 0
        self.state = RequestState.WAITING
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        # Tokens to prefill (the prompt, plus generated tokens on recompute)
        # and tokens already in the KV cache.
        self.target = prompt
        self.ctx = 0
        # Decode phase only: ctx = base + replica step counter, and the
        # request finishes when the counter reaches finish_step.
        self.base = 0
        self.finish_step = 0
        self.epoch = 0


class Histogram:
    """Prometheus-style histogram with fixed bucket bounds (seconds or tokens).

    Counts are kept per bucket and summed into cumulative counts on read, so
    an observation costs one binary search instead of one update per bound.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(float(bound) for bound in bounds)
        # Slot i counts values in (bounds[i - 1], bounds[i]]; the last slot
        # counts values above every bound.
        self._slots = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    @property
    def cumulative(self) -> np.ndarray:
        """Observations at or below each bound, as Prometheus reports them."""
        return np.cumsum(np.asarray(self._slots[:-1], dtype=np.int64))

    def observe(self, value: float, times: int = 1) -> None:
        if times <= 0:
            return
        self._slots[bisect.bisect_left(self.bounds, value)] += times
        self.count += times
        self.sum += value * times

    def observe_linear(
        self, first: float, slope: float, steps: int, times: int
    ) -> None:
        """Observe `first + slope * j` for j in 0..steps-1, each `times` times."""
        if steps <= 0 or times <= 0:
            return
        if slope <= 0.0:
            self.observe(first, steps * times)
            return
        bounds = self.bounds
        slots = self._slots
        index = bisect.bisect_left(bounds, first)
        below = 0  # values observed so far at or below bounds[index - 1]
        while index < len(bounds) and below < steps:
            at_or_below = min(steps, math.floor((bounds[index] - first) / slope) + 1)
            slots[index] += (at_or_below - below) * times
            below = at_or_below
            index += 1
        slots[-1] += (steps - below) * times
        self.count += steps * times
        self.sum += times * (steps * first + slope * steps * (steps - 1) / 2.0)

    def buckets(self) -> list[tuple[float, int]]:
        """Return (upper bound, cumulative count) pairs without +Inf."""
        return list(
            zip(self.bounds, itertools.accumulate(self._slots[:-1]), strict=True)
        )


@dataclass
class ReplicaCounters:
    """Monotonic counters of one replica, as vLLM exports them."""

    preemptions: int = 0
    # Engine iterations run, decode-only ones advanced in bulk included.
    iterations: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: int = 0
    timed_out: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS_S))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS_S))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS_S))
    request_prompt_tokens: Histogram = field(
        default_factory=lambda: Histogram(REQUEST_TOKEN_BUCKETS)
    )
    request_generation_tokens: Histogram = field(
        default_factory=lambda: Histogram(REQUEST_TOKEN_BUCKETS)
    )


class ReplicaEngine:
    """Scheduler, KV cache and clock of one vLLM engine."""

    def __init__(
        self, profile: AcceleratorProfile, config: EngineConfig, now: float
    ) -> None:
        self.profile = profile
        self.config = config
        self.now = now
        self.total_blocks = profile.kv_tokens // config.block_size
        self.used_blocks = 0
        self.waiting: deque[Request] = deque()
        self.n_waiting = 0
        self.prefilling: list[Request] = []
        # Admission order of every running request, newest last.
        self.running: dict[int, Request] = {}
        self.step = 0
        self.n_decode = 0
        self.sum_base = 0
        self.phase_counts = [0] * config.block_size
        self._need_prefix: list[int] | None = None
        self.finish_heap: list[tuple[int, int, int, Request]] = []
        self.deadlines: list[tuple[float, int, Request]] = []
        self._counters = ReplicaCounters()
        # Decode-only plan, valid until the batch or the KV cache changes
        # other than by decode growth: the step counter at which the next
        # request finishes, and the one at which the blocks run out (or -1).
        self._finish_step = -1
        self._stop_step = -1
        self._plan_prefix: list[int] = []
        self._plan_step0_ms = 0.0
        self._plan_slope_ms = 0.0
        # Decode-only iterations whose inter-token latencies are not yet in
        # the histogram: their count and the first one's latency.
        self._itl_steps = 0
        self._itl_first_ms = 0.0

    # -- read side --------------------------------------------------------

    @property
    def counters(self) -> ReplicaCounters:
        """Counters of the replica, up to date."""
        self._flush_itl()
        return self._counters

    @property
    def kv_usage(self) -> float:
        return self.used_blocks / self.total_blocks if self.total_blocks else 1.0

    @property
    def free_blocks(self) -> int:
        return self.total_blocks - self.used_blocks

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def context_tokens(self) -> int:
        return (
            self.sum_base
            + self.n_decode * self.step
            + sum(r.ctx for r in self.prefilling)
        )

    def rank_steady_until(self) -> float:
        """Return a time until which the router's key of this replica cannot fall.

        The key is (waiting, KV usage, running). Advancing a decode-only
        batch with nothing waiting only adds blocks, so the key can fall
        first in the iteration that finishes a request or runs out of
        blocks. The time returned is when that iteration starts, less a
        microsecond against rounding. With requests waiting or in prefill
        the key can fall at any iteration, so the time is `now`.
        """
        if not self.running and not self.n_waiting:
            return math.inf
        if self.n_waiting or self.prefilling:
            return self.now
        if self._stop_step < 0:
            self._plan_decode()
        steps = self._stop_step - self.step - 1
        if steps <= 0:
            return self.now
        slope_ms = self._plan_slope_ms
        first_ms = self._plan_step0_ms + slope_ms * self.step
        elapsed_ms = steps * first_ms + slope_ms * steps * (steps - 1) / 2.0
        return self.now + elapsed_ms / 1000.0 - 1e-6

    # -- requests in and out ----------------------------------------------

    def enqueue(self, request: Request) -> None:
        request.state = RequestState.WAITING
        self.waiting.append(request)
        self.n_waiting += 1
        deadline = request.arrival + FIRST_TOKEN_TIMEOUT_S
        heapq.heappush(self.deadlines, (deadline, request.rid, request))

    def abort_all(self) -> int:
        """Drop every waiting and running request; return how many were lost."""
        lost = 0
        for request in list(self.running.values()):
            self._release(request)
            request.state = RequestState.LOST
            lost += 1
        for request in self.waiting:
            if request.state is RequestState.WAITING:
                request.state = RequestState.LOST
                lost += 1
        self.waiting.clear()
        self.n_waiting = 0
        self.deadlines.clear()
        return lost

    # -- clock ------------------------------------------------------------

    def advance_to(self, t_end: float) -> None:
        """Run iterations until the clock reaches `t_end`.

        The last iteration may end after `t_end`: an iteration is atomic.
        """
        while True:
            if self.deadlines and self.deadlines[0][0] <= self.now:
                self._expire()
            if not self.running and not self.n_waiting:
                self.now = max(self.now, t_end)
                return
            if self.now >= t_end:
                return
            if (
                not self.prefilling
                and not (self.n_waiting and self._can_admit())
                and self._fast_forward(t_end)
            ):
                continue
            if not self._iterate():
                self.now = max(self.now, t_end)
                return

    # -- scheduling -------------------------------------------------------

    def _peek_waiting(self) -> Request | None:
        while self.waiting and self.waiting[0].state is not RequestState.WAITING:
            self.waiting.popleft()
        return self.waiting[0] if self.waiting else None

    def _can_admit(self) -> bool:
        head = self._peek_waiting()
        return (
            head is not None
            and len(self.running) < self.config.max_num_seqs
            and self.blocks_for(head.target) <= self.free_blocks
        )

    def _block_need_prefix(self) -> list[int]:
        """Return prefix sums of the blocks needed per iteration, two cycles long.

        A decoding request needs a new block in the iteration whose step
        counter s makes its context `base + s` a multiple of the block size.
        With `start = step % block_size`, `prefix[start + m] - prefix[start]`
        is the blocks needed by the next m iterations, for m up to a cycle.
        """
        if self._need_prefix is None:
            size = self.config.block_size
            counts = self.phase_counts
            needing = [counts[(-residue) % size] for residue in range(size)]
            self._need_prefix = list(itertools.accumulate(needing * 2, initial=0))
        return self._need_prefix

    def _steps_until_block_shortage(self) -> int:
        """Return how many decode iterations fit in the free blocks."""
        size = self.config.block_size
        cycles, spare = divmod(self.free_blocks, self.n_decode)
        prefix = self._block_need_prefix()
        start = self.step % size
        # A whole cycle needs n_decode > spare blocks, so the search finds an
        # iteration in this cycle that runs short.
        short = bisect.bisect_right(
            prefix, prefix[start] + spare, start + 1, start + size + 1
        )
        return cycles * size + short - start - 1

    def _fast_forward(self, t_end: float) -> bool:
        """Advance decode-only iterations at once; False if none can run.

        It runs the iterations that start before `t_end` (the last one may
        end after it), up to the next finish, block shortage or timeout.
        """
        n = self.n_decode
        if n == 0:
            return False
        if self._stop_step < 0:
            self._plan_decode()
        stop = t_end
        if self.n_waiting:
            stop = min(stop, self._next_deadline())
        step = self.step
        slope_ms = self._plan_slope_ms
        first_ms = self._plan_step0_ms + slope_ms * step
        steps = min(
            self._stop_step - step,
            _steps_started_before(first_ms, slope_ms, (stop - self.now) * 1000.0),
        )
        if steps < 1:
            return False
        prefix = self._plan_prefix
        size = len(prefix) // 2
        start = step % size
        partial = prefix[start + steps % size] - prefix[start]
        self.used_blocks += (steps // size) * n + partial
        if self._itl_steps == 0:
            self._itl_first_ms = first_ms
        self._itl_steps += steps
        self.step = step + steps
        elapsed_ms = steps * first_ms + slope_ms * steps * (steps - 1) / 2.0
        self.now += elapsed_ms / 1000.0
        counters = self._counters
        counters.generation_tokens += steps * n
        counters.iterations += steps
        if self.step >= self._finish_step:
            self._finish_due()
        return True

    def _plan_decode(self) -> None:
        """Find the next stop of the decode-only batch and its step times."""
        self._drop_stale_finishes()
        self._finish_step = self.finish_heap[0][0]
        shortage = self.step + self._steps_until_block_shortage()
        self._stop_step = min(self._finish_step, shortage)
        self._plan_prefix = self._block_need_prefix()
        # Iteration time in ms at step counter s: step0 + slope * s.
        profile = self.profile
        n = self.n_decode
        ctx_ms = profile.step_per_1k_ctx_ms / 1000.0
        self._plan_slope_ms = ctx_ms * n
        self._plan_step0_ms = (
            profile.step_base_ms + profile.step_per_seq_ms * n + ctx_ms * self.sum_base
        )

    def _invalidate_plan(self) -> None:
        """Record pending latencies and drop the plan before the batch changes."""
        self._flush_itl()
        self._stop_step = -1

    def _flush_itl(self) -> None:
        steps = self._itl_steps
        if steps == 0:
            return
        slope_ms = self.profile.step_per_1k_ctx_ms * self.n_decode / 1000.0
        self._counters.itl.observe_linear(
            self._itl_first_ms / 1000.0, slope_ms / 1000.0, steps, self.n_decode
        )
        self._itl_steps = 0

    def _iterate(self) -> bool:
        """Run one engine iteration; False when nothing could be scheduled."""
        self._invalidate_plan()
        # Decoding requests whose context reaches a block boundary now.
        needed = self.phase_counts[(-self.step) % self.config.block_size]
        while needed > self.free_blocks and self.running:
            victim = next(reversed(self.running.values()))
            if victim.state is RequestState.DECODE and self._needs_block(victim):
                needed -= 1
            self._preempt(victim)
        # Reserve the decode blocks before admissions can take them.
        self.used_blocks += needed
        budget = self.config.max_num_batched_tokens - self.n_decode
        context = self.sum_base + self.n_decode * self.step
        scheduled = self.n_decode
        prefill_tokens = 0
        completed: list[Request] = []
        for request in self.prefilling:
            if budget <= 0:
                break
            context += request.ctx
            chunk = min(request.target - request.ctx, budget)
            request.ctx += chunk
            budget -= chunk
            prefill_tokens += chunk
            scheduled += 1
            if request.ctx >= request.target:
                completed.append(request)
        while budget > 0 and self._can_admit():
            request = self.waiting.popleft()
            self.n_waiting -= 1
            self._admit(request)
            chunk = min(request.target, budget)
            request.ctx = chunk
            budget -= chunk
            prefill_tokens += chunk
            scheduled += 1
            if request.ctx >= request.target:
                completed.append(request)
        if scheduled == 0:
            return False
        step_ms = self.profile.step_ms(scheduled, context, prefill_tokens)
        n_decoded = self.n_decode
        self.step += 1
        self.now += step_ms / 1000.0
        self._counters.itl.observe(step_ms / 1000.0, n_decoded)
        self._counters.generation_tokens += n_decoded
        self._counters.iterations += 1
        self._finish_due()
        if completed:
            done = set(id(r) for r in completed)
            self.prefilling = [r for r in self.prefilling if id(r) not in done]
            for request in completed:
                self._complete_prefill(request)
        return True

    def _needs_block(self, request: Request) -> bool:
        return (request.base + self.step) % self.config.block_size == 0

    def _admit(self, request: Request) -> None:
        self._invalidate_plan()
        request.state = RequestState.PREFILL
        request.ctx = 0
        self.used_blocks += self.blocks_for(request.target)
        self.running[request.rid] = request
        self.prefilling.append(request)

    def _complete_prefill(self, request: Request) -> None:
        """Sample the token that ends a prefill and move to the decode phase."""
        self._invalidate_plan()
        if request.first_token_at is None:
            request.first_token_at = self.now
            self._counters.ttft.observe(self.now - request.arrival)
            self._counters.prompt_tokens += request.prompt
        request.generated += 1
        self._counters.generation_tokens += 1
        remaining = request.output - request.generated
        if remaining <= 0:
            self.used_blocks -= self.blocks_for(request.target)
            del self.running[request.rid]
            self._record_success(request)
            return
        request.state = RequestState.DECODE
        request.base = request.ctx - self.step
        request.finish_step = self.step + remaining
        request.epoch += 1
        self.n_decode += 1
        self.sum_base += request.base
        self.phase_counts[request.base % self.config.block_size] += 1
        self._need_prefix = None
        entry = (request.finish_step, request.rid, request.epoch, request)
        heapq.heappush(self.finish_heap, entry)

    def _leave_decode(self, request: Request) -> None:
        self._invalidate_plan()
        request.ctx = request.base + self.step
        request.generated = request.output - (request.finish_step - self.step)
        self.n_decode -= 1
        self.sum_base -= request.base
        self.phase_counts[request.base % self.config.block_size] -= 1
        self._need_prefix = None

    def _release(self, request: Request) -> None:
        """Free the blocks and batch slot of a running request."""
        self._invalidate_plan()
        if request.state is RequestState.DECODE:
            self._leave_decode(request)
            self.used_blocks -= self.blocks_for(request.ctx)
        else:
            self.used_blocks -= self.blocks_for(request.target)
            self.prefilling.remove(request)
        del self.running[request.rid]

    def _preempt(self, request: Request) -> None:
        """Preempt by recompute: the request re-queues at the head."""
        self._release(request)
        request.target = request.prompt + request.generated
        request.ctx = 0
        request.state = RequestState.WAITING
        self.waiting.appendleft(request)
        self.n_waiting += 1
        self._counters.preemptions += 1

    def _drop_stale_finishes(self) -> None:
        heap = self.finish_heap
        while heap and (
            heap[0][3].state is not RequestState.DECODE
            or heap[0][2] != heap[0][3].epoch
        ):
            heapq.heappop(heap)

    def _finish_due(self) -> None:
        heap = self.finish_heap
        while heap:
            self._drop_stale_finishes()
            if not heap or heap[0][0] > self.step:
                return
            request = heapq.heappop(heap)[3]
            self._leave_decode(request)
            self.used_blocks -= self.blocks_for(request.ctx)
            del self.running[request.rid]
            self._record_success(request)

    def _record_success(self, request: Request) -> None:
        request.state = RequestState.DONE
        request.finished_at = self.now
        self._counters.success += 1
        self._counters.e2e.observe(self.now - request.arrival)
        self._counters.request_prompt_tokens.observe(request.prompt)
        self._counters.request_generation_tokens.observe(request.output)

    def _next_deadline(self) -> float:
        heap = self.deadlines
        while heap and not _may_time_out(heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def _expire(self) -> None:
        """Cancel requests with no first token within the timeout."""
        heap = self.deadlines
        while heap and heap[0][0] <= self.now:
            request = heapq.heappop(heap)[2]
            if not _may_time_out(request):
                continue
            if request.state is RequestState.WAITING:
                self.n_waiting -= 1
            else:
                self._release(request)
            request.state = RequestState.TIMED_OUT
            self._counters.timed_out += 1


def _may_time_out(request: Request) -> bool:
    return request.first_token_at is None and request.state in (
        RequestState.WAITING,
        RequestState.PREFILL,
    )


def _steps_started_before(first_ms: float, slope_ms: float, budget_ms: float) -> int:
    """Return how many iterations start before `budget_ms`.

    Iteration j starts at `j * first + slope * j (j - 1) / 2` ms, so the
    result is the smallest k whose start is at or after the budget.
    """
    if budget_ms <= 0.0:
        return 0
    if slope_ms <= 0.0:
        return math.ceil(budget_ms / first_ms)
    a = slope_ms / 2.0
    b = first_ms - a
    k = math.ceil((-b + math.sqrt(b * b + 4.0 * a * budget_ms)) / (2.0 * a))
    while k * first_ms + slope_ms * k * (k - 1) / 2.0 < budget_ms:
        k += 1
    while (
        k > 1 and (k - 1) * first_ms + slope_ms * (k - 1) * (k - 2) / 2.0 >= budget_ms
    ):
        k -= 1
    return k
