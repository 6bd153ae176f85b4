//! Inputs of concurrent requests share batches.
//!
//! Each model has one queue and one thread that runs it. A request tokenises its inputs on its
//! own task, puts them on the queue as one job and waits for its reply. Whenever the model is
//! free, the thread takes every waiting job in arrival order up to `max_batch_tokens` tokens
//! (at least one job, whatever its size), and runs them together through the same
//! token-budget plan as the batch pipeline ([`crate::engine::run`]: length-sorted batches on
//! the model's workers, out-of-memory halving, one result per input). So under load the batch
//! grows with the queue, and a lone request runs at once without waiting for company.
//!
//! A request that is gone before its turn (the client hung up, its timeout fired) has dropped
//! its reply channel: the thread sees that and drops the job instead of running it. A panic
//! inside a model fails the jobs of that batch (424), not the thread.

use super::metrics::Metrics;
use crate::batching::BatchBudget;
use crate::models::tokenize::Encoded;
use crate::models::{Encoder, Replicas};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// Why a job has no result.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BatchError {
    /// The model failed on an input of this job (the message names no text).
    #[error("{0}")]
    Model(String),
    /// The server is stopping and took no new work.
    #[error("the server is shutting down")]
    Closed,
}

type Reply<O> = oneshot::Sender<Result<Vec<O>, BatchError>>;

struct Job<O> {
    encodings: Vec<Encoded>,
    tokens: usize,
    queued: Instant,
    reply: Reply<O>,
}

struct State<O> {
    jobs: VecDeque<Job<O>>,
    closed: bool,
}

struct Queue<O> {
    state: Mutex<State<O>>,
    wake: Condvar,
}

/// One model's queue and the thread that runs it.
pub struct Batcher<O> {
    queue: Arc<Queue<O>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<O: Send + 'static> Batcher<O> {
    /// Starts the thread running `models` (metrics under `label`, the model's name).
    pub fn start<M>(
        label: String,
        models: Arc<Replicas<M>>,
        budget: BatchBudget,
        max_batch_tokens: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self>
    where
        M: Encoder<Output = O> + Send + 'static,
    {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name(format!("batcher-{label}"))
            .spawn(move || {
                run_queue(&label, &worker, &models, budget, max_batch_tokens, &metrics)
            })?;
        Ok(Self {
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `encodings` as one job and waits for their outputs, in order.
    pub async fn submit(&self, encodings: Vec<Encoded>) -> Result<Vec<O>, BatchError> {
        if encodings.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self
                .queue
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.closed {
                return Err(BatchError::Closed);
            }
            state.jobs.push_back(Job {
                tokens: encodings.iter().map(Encoded::len).sum(),
                encodings,
                queued: Instant::now(),
                reply,
            });
        }
        self.queue.wake.notify_one();
        answer.await.unwrap_or(Err(BatchError::Closed))
    }

    /// Takes no new jobs, lets the thread finish the queued ones, and waits for it.
    pub fn close(&self) {
        self.queue
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.queue.wake.notify_all();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The thread: wait for jobs, take what fits, run, reply; until closed and drained.
fn run_queue<M: Encoder>(
    label: &str,
    queue: &Queue<M::Output>,
    models: &Replicas<M>,
    budget: BatchBudget,
    max_batch_tokens: usize,
    metrics: &Metrics,
) {
    loop {
        let mut jobs = {
            let mut state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            while state.jobs.is_empty() && !state.closed {
                state = queue
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.jobs.is_empty() {
                return;
            }
            take_jobs(&mut state.jobs, max_batch_tokens, metrics)
        };
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        for job in &jobs {
            metrics.observe_queue(started.duration_since(job.queued));
        }
        let mut counts = Vec::with_capacity(jobs.len());
        let mut encodings = Vec::new();
        for job in &mut jobs {
            counts.push(job.encodings.len());
            encodings.append(&mut job.encodings);
        }
        let tokens: usize = encodings.iter().map(Encoded::len).sum();
        let budget = spread(budget, encodings.len(), models.workers().len());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            crate::engine::run(models, &encodings, budget)
        }));
        metrics.observe_batch(label, started.elapsed(), encodings.len(), tokens);
        let mut results: Vec<Result<M::Output, String>> = match outcome {
            Ok(Ok(results)) => results
                .into_iter()
                .map(|r| r.map_err(|err| err.to_string()))
                .collect(),
            Ok(Err(err)) => encodings.iter().map(|_| Err(err.to_string())).collect(),
            Err(_) => encodings
                .iter()
                .map(|_| Err("the model panicked on this batch".to_string()))
                .collect(),
        };
        // Hand each job its slice of the results, in order; one failed input fails its job.
        for (job, count) in jobs.into_iter().zip(counts).rev() {
            let mine = results.split_off(results.len() - count);
            let reply = mine
                .into_iter()
                .collect::<Result<Vec<_>, String>>()
                .map_err(BatchError::Model);
            let _ = job.reply.send(reply);
        }
    }
}

/// `budget` with at most as many items per batch as spread `inputs` over every worker: a lone
/// small request (8 texts, one batch under the budget) would otherwise run on one worker
/// while the others idle, at twice the latency on two cores. Large batches are unaffected.
fn spread(budget: BatchBudget, inputs: usize, workers: usize) -> BatchBudget {
    BatchBudget {
        max_items: budget.max_items.min(inputs.div_ceil(workers.max(1))).max(1),
        ..budget
    }
}

/// Jobs from the front of the queue whose tokens fit `max_tokens` together (the first always);
/// jobs whose requester is gone are dropped and counted.
fn take_jobs<O>(
    waiting: &mut VecDeque<Job<O>>,
    max_tokens: usize,
    metrics: &Metrics,
) -> Vec<Job<O>> {
    let mut taken: Vec<Job<O>> = Vec::new();
    let mut tokens = 0;
    while let Some(job) = waiting.front() {
        if job.reply.is_closed() {
            waiting.pop_front();
            metrics.count_cancelled();
            continue;
        }
        if !taken.is_empty() && tokens + job.tokens > max_tokens {
            break;
        }
        tokens += job.tokens;
        if let Some(job) = waiting.pop_front() {
            taken.push(job);
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tokens: usize) -> (Job<u32>, oneshot::Receiver<Result<Vec<u32>, BatchError>>) {
        let (reply, answer) = oneshot::channel();
        let encodings = vec![Encoded {
            ids: vec![1; tokens],
            type_ids: vec![0; tokens],
            truncated: false,
        }];
        (
            Job {
                encodings,
                tokens,
                queued: Instant::now(),
                reply,
            },
            answer,
        )
    }

    #[test]
    fn jobs_are_taken_in_order_up_to_the_token_budget_and_the_first_always() {
        let metrics = Metrics::default();
        let mut waiting = VecDeque::new();
        let mut answers = Vec::new();
        for tokens in [300, 500, 400, 100] {
            let (job, answer) = job(tokens);
            waiting.push_back(job);
            answers.push(answer);
        }
        let taken = take_jobs(&mut waiting, 1000, &metrics);
        assert_eq!(
            taken.iter().map(|j| j.tokens).collect::<Vec<_>>(),
            [300, 500]
        );
        // One job above the budget still runs, alone.
        let mut big = VecDeque::new();
        let (job_big, _answer) = job(5000);
        big.push_back(job_big);
        assert_eq!(take_jobs(&mut big, 1000, &metrics).len(), 1);
        assert_eq!(waiting.len(), 2);
    }

    #[test]
    fn a_small_batch_is_spread_over_every_worker_and_a_large_one_keeps_its_budget() {
        let budget = BatchBudget {
            max_tokens: 16384,
            max_items: 32,
        };
        assert_eq!(spread(budget, 8, 2).max_items, 4);
        assert_eq!(spread(budget, 7, 2).max_items, 4);
        assert_eq!(spread(budget, 1, 4).max_items, 1);
        assert_eq!(spread(budget, 500, 2).max_items, 32);
        assert_eq!(spread(budget, 8, 1).max_items, 8);
        assert_eq!(spread(budget, 8, 2).max_tokens, 16384);
    }

    #[test]
    fn a_job_whose_requester_is_gone_is_dropped_not_run() {
        let metrics = Metrics::default();
        let mut waiting = VecDeque::new();
        let (gone, answer) = job(10);
        drop(answer);
        let (kept, _answer) = job(20);
        waiting.push_back(gone);
        waiting.push_back(kept);
        let taken = take_jobs(&mut waiting, 1000, &metrics);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].tokens, 20);
        assert_eq!(metrics.cancelled(), 1);
    }
}
