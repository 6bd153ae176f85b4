//! Adaptive, data-parallel execution of planned batches.
//!
//! [`run_batches`] takes a batch plan (from [`crate::batching::plan_batches`]) and one worker
//! per device (a model replica each). Workers pull planned batches from a shared queue, so a
//! fast device simply takes more of them; results are put back in input order, so the output is
//! the same whatever the number of workers.
//!
//! Each worker adapts its own token budget (items × longest padded tokens), because each device
//! has its own memory:
//!
//! - a pulled batch larger than the worker's current budget is cut into sub-batches that fit;
//! - on out-of-memory the budget is halved and the same items are retried in halves,
//!   recursively — nothing lost, nothing duplicated;
//! - on any other failure the items are retried in halves too, without touching the budget,
//!   so one bad item cannot take its batch-mates down with it;
//! - what still fails alone is that item's error ([`ItemError`]), reported, never hidden;
//! - after `grow_after` consecutive successful batches the budget doubles again, up to the
//!   planned maximum, so a transient squeeze does not slow the rest of the stage.
//!
//! With one worker everything runs on the calling thread; with several, one scoped thread per
//! worker. A panic inside `run` stops the other workers from taking new batches, and is
//! re-raised on the calling thread once every worker has stopped (nothing hangs, no thread
//! outlives the call).
//!
//! A graceful stop ([`crate::interrupt::requested`], set by the first SIGINT or SIGTERM) stops
//! the workers from taking new batches too; a batch already pulled finishes (with its
//! sub-batches and retries), and every planned item never run gets [`ItemError::Interrupted`],
//! so the caller can tell "not done because of the stop" from a failure.

pub mod fault;

pub use fault::{Fault, FaultInjector};

use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How a batch failed: out-of-memory shrinks the worker's budget; anything else only splits.
#[derive(Debug)]
pub enum BatchFailure<E> {
    OutOfMemory(E),
    Other(E),
}

/// How a worker's token budget adapts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivePolicy {
    /// The planned budget, items × longest padded tokens; the starting and largest budget.
    pub max_tokens: usize,
    /// The fewest items a batch is cut to when it exceeds the budget (1 usually). Failure
    /// splitting still goes down to single items, to find the item that fails.
    pub min_items: usize,
    /// Consecutive successful batches before the budget doubles again; 0 never grows it.
    pub grow_after: usize,
}

impl AdaptivePolicy {
    /// Budget `max_tokens`, cuts down to single items, grows after 4 successes.
    pub fn new(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            min_items: 1,
            grow_after: 4,
        }
    }
}

/// Why an item has no result.
#[derive(Debug, thiserror::Error)]
pub enum ItemError<E> {
    /// Out of memory even in a batch of its own.
    #[error("out of memory even alone: {0}")]
    OutOfMemory(E),
    /// Another failure, in a batch of its own.
    #[error("{0}")]
    Failed(E),
    /// The plan did not contain this item.
    #[error("item was not in the batch plan")]
    NotPlanned,
    /// The batch function returned this many results for this item alone (instead of 1).
    #[error("the batch function returned {got} results for one item")]
    ResultCount { got: usize },
    /// A graceful stop was requested ([`crate::interrupt`]) before this item's batch started.
    #[error("interrupted: the run was stopped before this item was processed")]
    Interrupted,
}

/// A plan or worker set [`run_batches`] refuses before running anything: a wrong plan is a
/// bug in the caller, reported as an error instead of a panic or silently wrong output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("the batch plan names item {index}, but there are only {items} items")]
    IndexOutOfRange { index: usize, items: usize },
    #[error("the batch plan names item {index} more than once")]
    DuplicateIndex { index: usize },
    #[error("no workers to run the batches on")]
    NoWorkers,
}

/// What one worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Successful calls of the batch function.
    pub batches: usize,
    /// Items those calls returned.
    pub items: usize,
    /// Padded tokens (items × longest) of those calls.
    pub tokens: usize,
    /// Out-of-memory failures.
    pub oom_events: usize,
    pub halvings: usize,
    pub growths: usize,
    /// The worker's token budget when it finished.
    pub budget_tokens: usize,
    /// The lowest token budget it reached.
    pub min_budget_tokens: usize,
}

/// What the dispatch did, for logs and the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchStats {
    /// Calls of the batch function, failed ones and retries included.
    pub batches_run: usize,
    pub oom_events: usize,
    pub halvings: usize,
    pub growths: usize,
    /// Retries of halves after a failed call (2 per split).
    pub retries: usize,
    /// Items whose result is an error.
    pub failed_items: usize,
    /// The lowest token budget any worker reached.
    pub min_budget_tokens: usize,
    pub per_worker: Vec<WorkerStats>,
}

/// The lower of two lowest budgets, where 0 means "none recorded".
fn min_recorded(a: usize, b: usize) -> usize {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}

impl DispatchStats {
    /// Adds another dispatch's statistics (a later window of the same stage).
    pub fn absorb(&mut self, other: &DispatchStats) {
        self.batches_run += other.batches_run;
        self.oom_events += other.oom_events;
        self.halvings += other.halvings;
        self.growths += other.growths;
        self.retries += other.retries;
        self.failed_items += other.failed_items;
        self.min_budget_tokens = min_recorded(self.min_budget_tokens, other.min_budget_tokens);
        if self.per_worker.len() < other.per_worker.len() {
            self.per_worker
                .resize(other.per_worker.len(), WorkerStats::default());
        }
        for (mine, theirs) in self.per_worker.iter_mut().zip(&other.per_worker) {
            mine.batches += theirs.batches;
            mine.items += theirs.items;
            mine.tokens += theirs.tokens;
            mine.oom_events += theirs.oom_events;
            mine.halvings += theirs.halvings;
            mine.growths += theirs.growths;
            mine.min_budget_tokens = min_recorded(mine.min_budget_tokens, theirs.min_budget_tokens);
            mine.budget_tokens = theirs.budget_tokens;
        }
    }
}

/// Per-item results in input order (`results[i]` is item `i`'s), and statistics.
#[derive(Debug)]
pub struct DispatchOutcome<T, E> {
    pub results: Vec<Result<T, ItemError<E>>>,
    pub stats: DispatchStats,
}

/// Runs `plan` (groups of indices into `lengths`, the items' token lengths, each group
/// length-sorted as the planner makes them) on `workers`, adapting each worker's batch size as
/// described in the [module docs](self). `run(worker, worker_index, items)` returns one result
/// per item, in the order of `items`.
///
/// Every item gets exactly one result: its value, its failure, [`ItemError::NotPlanned`]
/// when the plan left it out, or [`ItemError::Interrupted`] when a graceful stop
/// ([`crate::interrupt::requested`]) came before its batch was taken. A plan naming an item out of range or twice, or an empty
/// `workers`, is a [`DispatchError`] before anything runs.
///
/// # Panics
///
/// Re-raises a panic of `run`, after all workers have stopped.
pub fn run_batches<W, T, E, F>(
    workers: &[W],
    lengths: &[usize],
    plan: Vec<Vec<usize>>,
    policy: AdaptivePolicy,
    run: F,
) -> Result<DispatchOutcome<T, E>, DispatchError>
where
    W: Sync,
    T: Send,
    E: Send + Display,
    F: Fn(&W, usize, &[usize]) -> Result<Vec<T>, BatchFailure<E>> + Sync,
{
    let planned = validate(lengths.len(), &plan)?;
    if workers.is_empty() {
        return Err(DispatchError::NoWorkers);
    }
    let queue = BatchQueue {
        plan: &plan,
        next: AtomicUsize::new(0),
        aborted: AtomicBool::new(false),
        stop: if watches_interrupt() {
            crate::interrupt::requested
        } else {
            || false
        },
        stopped: AtomicBool::new(false),
    };
    let shared = Shared {
        lengths,
        policy: AdaptivePolicy {
            max_tokens: policy.max_tokens.max(1),
            min_items: policy.min_items.max(1),
            grow_after: policy.grow_after,
        },
        run: &run,
    };
    let finished: Vec<WorkerOutput<T, E>> = match workers {
        [only] => vec![work(only, 0, &shared, &queue)],
        _ => std::thread::scope(|scope| {
            let handles: Vec<_> = workers
                .iter()
                .enumerate()
                .map(|(index, worker)| {
                    let (shared, queue) = (&shared, &queue);
                    scope.spawn(move || work(worker, index, shared, queue))
                })
                .collect();
            // Join every worker before re-raising a panic, so none is left running.
            let joined: Vec<_> = handles.into_iter().map(|handle| handle.join()).collect();
            let mut outputs = Vec::with_capacity(joined.len());
            for result in joined {
                match result {
                    Ok(output) => outputs.push(output),
                    Err(payload) => std::panic::resume_unwind(payload),
                }
            }
            outputs
        }),
    };

    let mut slots: Vec<Option<Result<T, ItemError<E>>>> =
        (0..lengths.len()).map(|_| None).collect();
    let mut stats = DispatchStats {
        min_budget_tokens: shared.policy.max_tokens,
        ..DispatchStats::default()
    };
    for output in finished {
        for (index, result) in output.results {
            debug_assert!(slots[index].is_none(), "item {index} got two results");
            slots[index] = Some(result);
        }
        stats.batches_run += output.calls;
        stats.retries += output.retries;
        stats.oom_events += output.stats.oom_events;
        stats.halvings += output.stats.halvings;
        stats.growths += output.stats.growths;
        stats.min_budget_tokens = stats.min_budget_tokens.min(output.stats.min_budget_tokens);
        stats.per_worker.push(output.stats);
    }
    // Only a stop leaves planned items without a result (a panic does not get here).
    let stopped = queue.stopped.load(Ordering::Relaxed);
    let results: Vec<Result<T, ItemError<E>>> = slots
        .into_iter()
        .zip(planned)
        .map(|(slot, planned)| match slot {
            Some(result) => result,
            None if planned && stopped => Err(ItemError::Interrupted),
            None => Err(ItemError::NotPlanned),
        })
        .collect();
    stats.failed_items = results.iter().filter(|result| result.is_err()).count();
    let unrun = results
        .iter()
        .filter(|result| matches!(result, Err(ItemError::Interrupted)))
        .count();
    if unrun > 0 {
        tracing::warn!(
            signal = crate::interrupt::signal_name().unwrap_or("stop request"),
            unrun,
            "stop requested: no new batches taken; {unrun} items were not run"
        );
    }
    Ok(DispatchOutcome { results, stats })
}

/// Checks `plan` against `items` and returns which items it names.
fn validate(items: usize, plan: &[Vec<usize>]) -> Result<Vec<bool>, DispatchError> {
    let mut seen = vec![false; items];
    for &index in plan.iter().flatten() {
        let slot = seen
            .get_mut(index)
            .ok_or(DispatchError::IndexOutOfRange { index, items })?;
        if std::mem::replace(slot, true) {
            return Err(DispatchError::DuplicateIndex { index });
        }
    }
    Ok(seen)
}

// Unit tests run in parallel in one process, and the interrupt flag is process-wide: a test
// that sets it must not make every other test's dispatch stop. So under `cfg(test)` only a
// thread that opted in (the interrupt tests, via `WatchInterrupt`) watches the flag; the real
// build (and integration tests, which link the non-test library) always does.
#[cfg(test)]
thread_local! {
    static WATCH_INTERRUPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this call of [`run_batches`] stops on [`crate::interrupt::requested`]. Read on the
/// calling thread, before the workers start (they may run on other threads).
fn watches_interrupt() -> bool {
    #[cfg(test)]
    {
        WATCH_INTERRUPT.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// The planned batches, handed out one at a time to whichever worker asks first.
struct BatchQueue<'plan> {
    plan: &'plan [Vec<usize>],
    next: AtomicUsize,
    /// Set when a worker panics, so the others stop taking batches.
    aborted: AtomicBool,
    /// Whether a graceful stop is requested ([`crate::interrupt::requested`]).
    stop: fn() -> bool,
    /// Set when `stop` turned a worker away, so unrun items are reported as interrupted.
    stopped: AtomicBool,
}

impl BatchQueue<'_> {
    fn pull(&self) -> Option<&[usize]> {
        if self.aborted.load(Ordering::Relaxed) {
            return None;
        }
        if (self.stop)() {
            self.stopped.store(true, Ordering::Relaxed);
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        self.plan.get(index).map(Vec::as_slice)
    }
}

/// Marks the queue aborted if dropped while its thread panics.
struct AbortOnPanic<'queue>(&'queue AtomicBool);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// What every worker reads.
struct Shared<'a, F> {
    lengths: &'a [usize],
    policy: AdaptivePolicy,
    run: &'a F,
}

/// One worker's results and counters, merged by [`run_batches`].
struct WorkerOutput<T, E> {
    results: Vec<(usize, Result<T, ItemError<E>>)>,
    stats: WorkerStats,
    calls: usize,
    retries: usize,
}

/// One worker: its device, its budget, and what it has done.
struct Worker<'a, W, F, T, E> {
    device: &'a W,
    index: usize,
    shared: &'a Shared<'a, F>,
    budget: usize,
    successes_in_a_row: usize,
    output: WorkerOutput<T, E>,
}

fn work<W, T, E, F>(
    device: &W,
    index: usize,
    shared: &Shared<'_, F>,
    queue: &BatchQueue<'_>,
) -> WorkerOutput<T, E>
where
    E: Display,
    F: Fn(&W, usize, &[usize]) -> Result<Vec<T>, BatchFailure<E>>,
{
    let _abort = AbortOnPanic(&queue.aborted);
    let budget = shared.policy.max_tokens;
    let mut worker = Worker {
        device,
        index,
        shared,
        budget,
        successes_in_a_row: 0,
        output: WorkerOutput {
            results: Vec::new(),
            stats: WorkerStats {
                budget_tokens: budget,
                min_budget_tokens: budget,
                ..WorkerStats::default()
            },
            calls: 0,
            retries: 0,
        },
    };
    while let Some(batch) = queue.pull() {
        worker.execute(batch);
    }
    worker.output.stats.budget_tokens = worker.budget;
    worker.output
}

/// How one call of the batch function went.
enum Attempt<T, E> {
    Done(Vec<T>),
    OutOfMemory(E),
    Other(E),
    WrongCount(usize),
}

impl<W, T, E, F> Worker<'_, W, F, T, E>
where
    E: Display,
    F: Fn(&W, usize, &[usize]) -> Result<Vec<T>, BatchFailure<E>>,
{
    /// Padded tokens of `items`: count × the longest (a zero length counts as 1, as in the
    /// planner).
    fn padded_tokens(&self, items: &[usize]) -> usize {
        let longest = items
            .iter()
            .map(|&item| self.shared.lengths[item].max(1))
            .max()
            .unwrap_or(0);
        items.len().saturating_mul(longest)
    }

    /// Runs `items`, cut into sub-batches within the current budget.
    fn execute(&mut self, items: &[usize]) {
        let mut start = 0;
        while start < items.len() {
            let end = start + self.fitting_prefix(&items[start..]);
            self.attempt(&items[start..end]);
            start = end;
        }
    }

    /// How many leading items of `items` fit the budget (at least `min_items`, or all).
    fn fitting_prefix(&self, items: &[usize]) -> usize {
        let mut longest = 0;
        for (count, &item) in items.iter().enumerate() {
            longest = longest.max(self.shared.lengths[item].max(1));
            let fits = (count + 1).saturating_mul(longest) <= self.budget;
            if !fits && count >= self.shared.policy.min_items {
                return count;
            }
        }
        items.len()
    }

    fn attempt(&mut self, items: &[usize]) {
        self.output.calls += 1;
        let attempt = match (self.shared.run)(self.device, self.index, items) {
            Ok(values) if values.len() == items.len() => Attempt::Done(values),
            Ok(values) => Attempt::WrongCount(values.len()),
            Err(BatchFailure::OutOfMemory(err)) => Attempt::OutOfMemory(err),
            Err(BatchFailure::Other(err)) => Attempt::Other(err),
        };
        match attempt {
            Attempt::Done(values) => self.succeeded(items, values),
            Attempt::OutOfMemory(err) => {
                self.successes_in_a_row = 0;
                self.output.stats.oom_events += 1;
                if let [item] = items {
                    tracing::warn!(
                        worker = self.index,
                        item,
                        "out of memory on a single item: {err}"
                    );
                    self.output
                        .results
                        .push((*item, Err(ItemError::OutOfMemory(err))));
                    return;
                }
                // Halve below the size that just failed, not just below the budget (a short
                // last batch can fail well under it).
                let failed_tokens = self.padded_tokens(items);
                let halved = (self.budget.min(failed_tokens) / 2).max(1);
                tracing::warn!(
                    worker = self.index,
                    items = items.len(),
                    tokens = failed_tokens,
                    budget = halved,
                    "out of memory; halving the batch budget and retrying: {err}"
                );
                self.budget = halved;
                self.output.stats.halvings += 1;
                self.output.stats.min_budget_tokens =
                    self.output.stats.min_budget_tokens.min(halved);
                self.split(items);
            }
            Attempt::Other(err) => {
                self.successes_in_a_row = 0;
                match items {
                    [item] => self
                        .output
                        .results
                        .push((*item, Err(ItemError::Failed(err)))),
                    _ => self.split(items),
                }
            }
            Attempt::WrongCount(got) => {
                self.successes_in_a_row = 0;
                match items {
                    [item] => self
                        .output
                        .results
                        .push((*item, Err(ItemError::ResultCount { got }))),
                    _ => self.split(items),
                }
            }
        }
    }

    /// Retries `items` (more than one) as two halves, each cut to the current budget.
    fn split(&mut self, items: &[usize]) {
        let (left, right) = items.split_at(items.len() / 2);
        self.output.retries += 2;
        self.execute(left);
        self.execute(right);
    }

    fn succeeded(&mut self, items: &[usize], values: Vec<T>) {
        let tokens = self.padded_tokens(items);
        let stats = &mut self.output.stats;
        stats.batches += 1;
        stats.items += items.len();
        stats.tokens += tokens;
        self.output
            .results
            .extend(items.iter().copied().zip(values.into_iter().map(Ok)));
        self.successes_in_a_row += 1;
        let policy = self.shared.policy;
        if policy.grow_after > 0
            && self.successes_in_a_row >= policy.grow_after
            && self.budget < policy.max_tokens
        {
            self.budget = self.budget.saturating_mul(2).min(policy.max_tokens);
            self.output.stats.growths += 1;
            self.successes_in_a_row = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batching::{plan_batches, BatchBudget};
    use std::sync::Mutex;

    #[derive(Debug, PartialEq)]
    struct Boom(&'static str);

    impl Display for Boom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    /// 100 items of varied lengths (1..=120), planned like a stage would.
    fn lengths() -> Vec<usize> {
        (0..100).map(|i| 1 + (i * 37 + i * i * 11) % 120).collect()
    }

    fn plan(lengths: &[usize], max_tokens: usize) -> Vec<Vec<usize>> {
        plan_batches(
            lengths,
            BatchBudget {
                max_tokens,
                max_items: 64,
            },
        )
    }

    fn padded(lengths: &[usize], items: &[usize]) -> usize {
        items.len() * items.iter().map(|&i| lengths[i].max(1)).max().unwrap_or(0)
    }

    fn values(outcome: &DispatchOutcome<usize, Boom>) -> Vec<Option<usize>> {
        outcome
            .results
            .iter()
            .map(|r| r.as_ref().ok().copied())
            .collect()
    }

    fn doubled(count: usize) -> Vec<Option<usize>> {
        (0..count).map(|i| Some(i * 2)).collect()
    }

    #[test]
    fn oom_halves_until_batches_fit_and_every_item_comes_back_once() {
        let lengths = lengths();
        let limit = 300;
        let succeeded: Mutex<Vec<usize>> = Mutex::new(Vec::new());
        let outcome = run_batches(
            &[()],
            &lengths,
            plan(&lengths, 1000),
            AdaptivePolicy {
                max_tokens: 1000,
                min_items: 1,
                grow_after: 0,
            },
            |_, _, items: &[usize]| {
                if padded(&lengths, items) > limit {
                    return Err(BatchFailure::OutOfMemory(Boom("oom")));
                }
                succeeded.lock().unwrap().extend_from_slice(items);
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        assert_eq!(values(&outcome), doubled(lengths.len()));
        let mut seen = succeeded.into_inner().unwrap();
        seen.sort();
        assert_eq!(
            seen,
            (0..lengths.len()).collect::<Vec<_>>(),
            "each item run once"
        );
        let stats = &outcome.stats;
        assert!(stats.halvings >= 2, "{stats:?}");
        assert_eq!(stats.oom_events, stats.halvings);
        assert!(stats.per_worker[0].budget_tokens <= limit, "{stats:?}");
        assert!(stats.min_budget_tokens <= limit);
        assert_eq!(stats.failed_items, 0);
        assert_eq!(stats.per_worker[0].items, lengths.len());
        assert_eq!(
            stats.batches_run,
            stats.per_worker[0].batches + stats.oom_events
        );
    }

    #[test]
    fn budget_grows_back_after_pressure_eases() {
        let lengths = vec![10; 200];
        let calls = AtomicUsize::new(0);
        let outcome = run_batches(
            &[()],
            &lengths,
            plan(&lengths, 320),
            AdaptivePolicy {
                max_tokens: 320,
                min_items: 1,
                grow_after: 2,
            },
            |_, _, items: &[usize]| {
                // Memory is tight for the first three calls only.
                if calls.fetch_add(1, Ordering::Relaxed) < 3 && items.len() > 4 {
                    return Err(BatchFailure::OutOfMemory(Boom("oom")));
                }
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        assert_eq!(values(&outcome), doubled(lengths.len()));
        let worker = &outcome.stats.per_worker[0];
        assert!(
            worker.halvings >= 1 && worker.min_budget_tokens < 320,
            "{worker:?}"
        );
        assert!(worker.growths >= 1, "{worker:?}");
        assert_eq!(
            worker.budget_tokens, 320,
            "grown back to the planned budget"
        );
    }

    #[test]
    fn pulled_batches_over_the_budget_are_cut_to_fit() {
        let lengths = lengths();
        let mut sorted: Vec<usize> = (0..lengths.len()).collect();
        sorted.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        let biggest_call = AtomicUsize::new(0);
        let outcome = run_batches(
            &[()],
            &lengths,
            vec![sorted],
            AdaptivePolicy::new(500),
            |_, _, items: &[usize]| {
                biggest_call.fetch_max(padded(&lengths, items), Ordering::Relaxed);
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        assert_eq!(values(&outcome), doubled(lengths.len()));
        assert!(biggest_call.into_inner() <= 500);
        assert!(outcome.stats.batches_run > 10);
    }

    #[test]
    fn min_items_keeps_cut_batches_from_getting_smaller() {
        let lengths = vec![100; 20];
        let smallest = AtomicUsize::new(usize::MAX);
        let outcome = run_batches(
            &[()],
            &lengths,
            vec![(0..20).collect()],
            AdaptivePolicy {
                max_tokens: 150,
                min_items: 4,
                grow_after: 0,
            },
            |_, _, items: &[usize]| {
                smallest.fetch_min(items.len(), Ordering::Relaxed);
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        assert_eq!(values(&outcome), doubled(lengths.len()));
        assert_eq!(smallest.into_inner(), 4);
    }

    #[test]
    fn only_the_item_that_fails_alone_gets_an_error() {
        let lengths = lengths();
        let outcome = run_batches(
            &[()],
            &lengths,
            plan(&lengths, 1000),
            AdaptivePolicy::new(1000),
            |_, _, items: &[usize]| {
                if items.contains(&37) {
                    return Err(BatchFailure::OutOfMemory(Boom("oom")));
                }
                if items.contains(&5) {
                    return Err(BatchFailure::Other(Boom("bad input")));
                }
                if items.contains(&60) {
                    return Ok(vec![0; items.len() + 1]);
                }
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        for (index, result) in outcome.results.iter().enumerate() {
            match (index, result) {
                (37, Err(ItemError::OutOfMemory(Boom("oom")))) => {}
                (5, Err(ItemError::Failed(Boom("bad input")))) => {}
                (60, Err(ItemError::ResultCount { got: 2 })) => {}
                (_, Ok(value)) if ![5, 37, 60].contains(&index) => assert_eq!(*value, index * 2),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(outcome.stats.failed_items, 3);
        let message = outcome.results[37].as_ref().unwrap_err().to_string();
        assert_eq!(message, "out of memory even alone: oom");
    }

    #[test]
    fn bad_plans_are_errors_and_unplanned_items_are_reported() {
        let lengths = vec![5; 4];
        let ok = |_: &(), _: usize, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
            Ok(items.iter().map(|i| i * 2).collect())
        };
        let policy = AdaptivePolicy::new(100);
        assert_eq!(
            run_batches(&[()], &lengths, vec![vec![0, 4]], policy, ok).unwrap_err(),
            DispatchError::IndexOutOfRange { index: 4, items: 4 }
        );
        assert_eq!(
            run_batches(&[()], &lengths, vec![vec![0, 1], vec![1]], policy, ok).unwrap_err(),
            DispatchError::DuplicateIndex { index: 1 }
        );
        let no_workers: [(); 0] = [];
        assert_eq!(
            run_batches(&no_workers, &lengths, vec![vec![0]], policy, ok).unwrap_err(),
            DispatchError::NoWorkers
        );
        let outcome = run_batches(&[()], &lengths, vec![vec![2, 0]], policy, ok).unwrap();
        assert_eq!(outcome.results.len(), 4);
        assert!(matches!(outcome.results[0], Ok(0)));
        assert!(matches!(outcome.results[1], Err(ItemError::NotPlanned)));
        assert!(matches!(outcome.results[2], Ok(4)));
        assert!(matches!(outcome.results[3], Err(ItemError::NotPlanned)));
        assert_eq!(outcome.stats.failed_items, 2);
    }

    #[test]
    fn three_workers_give_the_same_results_as_one() {
        let lengths = lengths();
        let plan = plan(&lengths, 400);
        assert!(plan.len() > 6);
        let threads: Mutex<std::collections::HashSet<std::thread::ThreadId>> =
            Mutex::new(Default::default());
        let worker_1_started = AtomicBool::new(false);
        let run = |limit_on: Option<usize>| {
            let (threads, lengths, worker_1_started) = (&threads, &lengths, &worker_1_started);
            move |device: &usize, index: usize, items: &[usize]| {
                assert_eq!(*device, index * 10, "each worker gets its own device");
                threads.lock().unwrap().insert(std::thread::current().id());
                // With several workers, the others wait (up to 5 s) for worker 1 to take a
                // batch, so it surely runs some: the queue cannot drain without it.
                if index == 1 {
                    worker_1_started.store(true, Ordering::SeqCst);
                } else if limit_on.is_some() {
                    let start = std::time::Instant::now();
                    while !worker_1_started.load(Ordering::SeqCst) && start.elapsed().as_secs() < 5
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                // Every item (≤ 120 tokens) fits alone under the limit.
                if limit_on == Some(index) && padded(lengths, items) > 150 {
                    return Err(BatchFailure::OutOfMemory(Boom("oom")));
                }
                if items.contains(&42) {
                    return Err(BatchFailure::Other(Boom("bad item")));
                }
                Ok(items.iter().map(|i| i * 2).collect())
            }
        };
        let policy = AdaptivePolicy::new(400);
        let one = run_batches(&[0], &lengths, plan.clone(), policy, run(None)).unwrap();
        let three = run_batches(&[0, 10, 20], &lengths, plan.clone(), policy, run(None)).unwrap();
        // The previous runs set the flag; reset it so this run's workers really wait for 1.
        worker_1_started.store(false, Ordering::SeqCst);
        let squeezed = run_batches(&[0, 10, 20], &lengths, plan, policy, run(Some(1))).unwrap();
        let mut expected = doubled(lengths.len());
        expected[42] = None;
        assert_eq!(values(&one), expected);
        assert_eq!(values(&three), expected);
        assert_eq!(values(&squeezed), expected);
        assert_eq!(three.stats.per_worker.len(), 3);
        assert_eq!(
            three
                .stats
                .per_worker
                .iter()
                .map(|w| w.items)
                .sum::<usize>(),
            lengths.len() - 1
        );
        assert!(
            threads.into_inner().unwrap().len() >= 2,
            "ran on several threads"
        );
        let oom_workers: Vec<usize> = squeezed
            .stats
            .per_worker
            .iter()
            .map(|w| w.oom_events)
            .collect();
        assert_eq!(oom_workers[0] + oom_workers[2], 0, "{oom_workers:?}");
        assert!(oom_workers[1] > 0, "{oom_workers:?}");
        assert!(squeezed.stats.per_worker[1].min_budget_tokens <= 150);
        assert_eq!(squeezed.stats.per_worker[0].min_budget_tokens, 400);
    }

    #[test]
    fn a_panicking_worker_stops_the_others_and_the_panic_propagates() {
        let lengths = vec![10; 300];
        let plan = plan(&lengths, 20);
        assert_eq!(plan.len(), 150);
        let calls = AtomicUsize::new(0);
        let crashed = AtomicBool::new(false);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_batches(
                &[0, 1, 2],
                &lengths,
                plan,
                AdaptivePolicy::new(20),
                |_, index, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
                    calls.fetch_add(1, Ordering::Relaxed);
                    if index == 1 {
                        crashed.store(true, Ordering::SeqCst);
                        panic!("worker 1 crashed");
                    }
                    // The others wait (up to 5 s) for worker 1 to crash, so the crash surely
                    // happens while batches remain, however the threads are scheduled; then
                    // they are slow (the 148 left would take 7.4 s on the two of them),
                    // leaving the panic hook (which may print a backtrace before unwinding
                    // starts: over a second on two loaded cores, seen in CI) time to finish.
                    let start = std::time::Instant::now();
                    while !crashed.load(Ordering::SeqCst) && start.elapsed().as_secs() < 5 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    Ok(items.to_vec())
                },
            )
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"worker 1 crashed"));
        // Without the abort flag all 150 planned batches would run.
        let calls = calls.into_inner();
        assert!(
            calls < 100,
            "the others stopped taking batches: {calls} calls"
        );
    }

    /// Makes this thread's `run_batches` watch the interrupt flag, holds the lock every test
    /// that sets the flag takes, and on drop (even on a failed assertion) clears the flag and
    /// stops watching.
    struct WatchInterrupt(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

    impl WatchInterrupt {
        fn start() -> Self {
            let guard = crate::interrupt::lock_flag_for_test();
            crate::interrupt::reset_for_test();
            WATCH_INTERRUPT.with(|watch| watch.set(true));
            WatchInterrupt(guard)
        }
    }

    impl Drop for WatchInterrupt {
        fn drop(&mut self) {
            WATCH_INTERRUPT.with(|watch| watch.set(false));
            crate::interrupt::reset_for_test();
        }
    }

    #[test]
    fn a_stop_request_before_the_run_runs_nothing_and_every_item_is_interrupted() {
        let _watch = WatchInterrupt::start();
        crate::interrupt::request_for_test();
        let lengths = vec![10; 40];
        let calls = AtomicUsize::new(0);
        let outcome = run_batches(
            &[0, 1],
            &lengths,
            plan(&lengths, 50),
            AdaptivePolicy::new(50),
            |_, _, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        assert_eq!(calls.into_inner(), 0);
        assert!(outcome
            .results
            .iter()
            .all(|r| matches!(r, Err(ItemError::Interrupted))));
        assert_eq!(outcome.stats.failed_items, 40);
    }

    #[test]
    fn a_stop_request_while_running_finishes_the_running_batch_and_interrupts_the_rest() {
        let _watch = WatchInterrupt::start();
        let lengths = vec![10; 100];
        let plan = plan(&lengths, 50);
        assert_eq!(plan.len(), 20);
        let ran: Mutex<Vec<usize>> = Mutex::new(Vec::new());
        let outcome = run_batches(
            &[()],
            &lengths,
            plan,
            AdaptivePolicy::new(50),
            |_, _, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
                let mut ran = ran.lock().unwrap();
                // The stop comes during the third batch, which still completes.
                if ran.len() == 2 {
                    crate::interrupt::request_for_test();
                }
                ran.push(items.len());
                Ok(items.iter().map(|i| i * 2).collect())
            },
        );
        let outcome = outcome.unwrap();
        assert_eq!(
            ran.into_inner().unwrap().len(),
            3,
            "no batch taken after the stop"
        );
        let done = outcome.results.iter().filter(|r| r.is_ok()).count();
        let interrupted = outcome
            .results
            .iter()
            .filter(|r| matches!(r, Err(ItemError::Interrupted)))
            .count();
        assert_eq!(done, 15, "three batches of 5 ran");
        assert_eq!(
            done + interrupted,
            100,
            "no item missing or failed otherwise"
        );
        for (index, result) in outcome.results.iter().enumerate() {
            if let Ok(value) = result {
                assert_eq!(*value, index * 2);
            }
        }
        assert_eq!(outcome.stats.failed_items, interrupted);
        assert_eq!(outcome.stats.batches_run, 3);
        // What a stage makes of it: a model error that says why the item has no result.
        let error = crate::models::ModelError::from_item(ItemError::Interrupted);
        assert!(matches!(error, crate::models::ModelError::Interrupted));
        assert!(error.to_string().starts_with("interrupted"), "{error}");
    }

    #[test]
    fn several_workers_stop_taking_batches_after_a_stop_request() {
        let _watch = WatchInterrupt::start();
        let lengths = vec![10; 300];
        let plan = plan(&lengths, 20);
        assert_eq!(plan.len(), 150);
        let calls = Mutex::new(0);
        let outcome = run_batches(
            &[0, 1, 2],
            &lengths,
            plan,
            AdaptivePolicy::new(20),
            |_, _, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
                // Counted and flagged under one lock, so no call can slip in between.
                let mut calls = calls.lock().unwrap();
                *calls += 1;
                if *calls == 6 {
                    crate::interrupt::request_for_test();
                }
                drop(calls);
                Ok(items.iter().map(|i| i * 2).collect())
            },
        )
        .unwrap();
        let calls = calls.into_inner().unwrap();
        // Each worker may have pulled one batch before it saw the flag: at most 6 + 2 more.
        assert!((6..=8).contains(&calls), "{calls} calls");
        let done = outcome.results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(done, calls * 2);
        assert!(outcome
            .results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(ItemError::Interrupted))));
    }

    #[test]
    fn unplanned_items_stay_unplanned_after_a_stop() {
        let _watch = WatchInterrupt::start();
        crate::interrupt::request_for_test();
        let lengths = vec![5; 3];
        let outcome = run_batches(
            &[()],
            &lengths,
            vec![vec![0, 1]],
            AdaptivePolicy::new(100),
            |_, _, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
                Ok(items.to_vec())
            },
        )
        .unwrap();
        assert!(matches!(outcome.results[0], Err(ItemError::Interrupted)));
        assert!(matches!(outcome.results[1], Err(ItemError::Interrupted)));
        assert!(matches!(outcome.results[2], Err(ItemError::NotPlanned)));
    }

    #[test]
    fn other_dispatches_do_not_watch_the_flag_in_unit_tests() {
        // The isolation the other tests rely on: without `WatchInterrupt`, a set flag (from a
        // test running in parallel) does not stop this thread's dispatch.
        let _guard = crate::interrupt::lock_flag_for_test();
        crate::interrupt::request_for_test();
        let lengths = vec![5; 10];
        let outcome = run_batches(
            &[()],
            &lengths,
            plan(&lengths, 10),
            AdaptivePolicy::new(10),
            |_, _, items: &[usize]| -> Result<Vec<usize>, BatchFailure<Boom>> {
                Ok(items.iter().map(|i| i * 2).collect())
            },
        );
        crate::interrupt::reset_for_test();
        assert_eq!(values(&outcome.unwrap()), doubled(10));
    }

    #[test]
    fn stats_serialize_for_the_manifest() {
        let stats = DispatchStats {
            per_worker: vec![WorkerStats::default()],
            ..DispatchStats::default()
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["halvings"], 0);
        assert_eq!(json["per_worker"][0]["budget_tokens"], 0);
    }
}
