//! The engine's thread: every compile and every `nft` transaction runs here,
//! one job at a time, never on the daemon's event loop. After each job it
//! hands the event loop the engine's new [`Snapshot`], from which reads are
//! answered while the next job runs, and what changed. The rollback timer of
//! an open confirmation window runs here too, between jobs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::engine::{Engine, EngineError, Outcome, Snapshot, Trigger};
use crate::backend::Backend;
use crate::compile::GroupPeers;
use crate::dynamic::{DynState, Update};
use crate::location::Judgements;
use crate::protocol::Answer;
use crate::protocol::Response;
use crate::units::Units;

/// The daemon's log lines keep the daemon's name, wherever they are written.
const TARGET: &str = "ringfence::daemon";

/// What the event loop asks of the engine.
pub enum Job {
    /// Re-read the policy files; `reply` is the `apply` request's client.
    Reload {
        trigger: Trigger,
        why: &'static str,
        reply: Option<oneshot::Sender<Answer>>,
    },
    /// New values of some keywords, from one source.
    Dynamic(Update),
    /// The group members among the peers whose SAs this host started.
    Peers(GroupPeers),
    /// The running units.
    Units(Units),
    /// Location detection's judgements.
    Location(Judgements),
    Confirm(oneshot::Sender<Answer>),
}

/// What a job changed, for the event loop (which keeps charon and the xfrm
/// policies in step, and answers reads from the snapshot).
pub struct Done {
    pub snapshot: Arc<Snapshot>,
    pub change: Change,
    /// The client of an `apply`, answered once the loop has taken the change.
    pub reply: Option<(oneshot::Sender<Answer>, Response)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A table was applied or reloaded.
    Applied,
    /// Dynamic sets may have changed.
    Dynamic,
    Nothing,
}

pub struct Worker<B: Backend> {
    jobs: Sender<Job>,
    thread: JoinHandle<Engine<B>>,
    /// Jobs sent and not yet done.
    queued: Arc<AtomicUsize>,
}

impl<B: Backend + Send + 'static> Worker<B> {
    /// Moves `engine` to a thread of its own.
    pub fn start(engine: Engine<B>) -> (Self, mpsc::UnboundedReceiver<Done>) {
        let (done_tx, done) = mpsc::unbounded_channel();
        let (jobs, queue) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || work(engine, queue, &counter, done_tx))
            .expect("cannot start the engine's thread");
        (Worker { jobs, thread, queued }, done)
    }

    pub fn send(&self, job: Job) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        // The thread ends only when `stop` drops the sender.
        let _ = self.jobs.send(job);
    }

    /// How many changes are waiting for the engine or being made.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits for the jobs sent so far, then hands the engine back. A panic of
    /// the engine's thread goes on in the caller's.
    pub async fn stop(self) -> Engine<B> {
        drop(self.jobs);
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(engine)) => engine,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

fn work<B: Backend>(
    mut engine: Engine<B>,
    queue: Receiver<Job>,
    queued: &AtomicUsize,
    done: mpsc::UnboundedSender<Done>,
) -> Engine<B> {
    // A job taken from the queue while folding dynamic updates, done next.
    let mut held = None;
    loop {
        let deadline = engine.pending.as_ref().map(|p| p.deadline);
        let job = match (held.take(), deadline) {
            (Some(job), _) => Ok(job),
            (None, Some(at)) => queue.recv_timeout(at.saturating_duration_since(Instant::now())),
            (None, None) => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let done_job = job.is_ok();
        let (change, reply) = match job {
            Err(RecvTimeoutError::Disconnected) => return engine,
            Err(RecvTimeoutError::Timeout) => match engine.rollback() {
                Ok(outcome) => {
                    log_applied(&engine, outcome, "rolled back: not confirmed in time");
                    (Change::Applied, None)
                }
                Err(e) => {
                    tracing::error!(target: TARGET, "rollback failed: {e:#}");
                    (Change::Nothing, None)
                }
            },
            Ok(Job::Reload { trigger, why, reply }) => reload(&mut engine, trigger, why, reply),
            Ok(Job::Dynamic(update)) => {
                let state = fold_dynamic(engine.dynamic.clone(), update, &queue, queued, &mut held);
                log_set_update(engine.update_dynamic(state), "dynamic sets");
                (Change::Dynamic, None)
            }
            Ok(Job::Peers(peers)) => {
                log_set_update(engine.update_peers(peers), "group peer sets");
                (Change::Nothing, None)
            }
            Ok(Job::Units(units)) => {
                log_set_update(engine.update_units(units), "unit rules' sets");
                (Change::Nothing, None)
            }
            Ok(Job::Location(judged)) => {
                log_set_update(engine.update_location(judged), "location sets");
                (Change::Nothing, None)
            }
            Ok(Job::Confirm(reply)) => {
                let answer = engine.confirm().map(|()| {
                    tracing::info!(target: TARGET, "apply confirmed");
                    json!({ "confirmed": true })
                });
                (Change::Nothing, Some((reply, answer.map_err(|e| e.to_string()))))
            }
        };
        if done_job {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
        let snapshot = Arc::new(engine.snapshot());
        let reply = reply.map(|(tx, answer)| (tx, answer.map_or_else(Response::Error, Response::Ok)));
        if done.send(Done { snapshot, change, reply }).is_err() {
            return engine;
        }
    }
}

/// The dynamic state after `first` and every dynamic update queued behind it:
/// one set update for a burst of address events instead of one per event,
/// each replacing the last. The first other job met is left in `held`.
fn fold_dynamic(
    mut state: DynState,
    first: Update,
    queue: &Receiver<Job>,
    queued: &AtomicUsize,
    held: &mut Option<Job>,
) -> DynState {
    let mut next = Some(first);
    while let Some((keywords, part)) = next.take() {
        state.replace(keywords, part);
        match queue.try_recv() {
            Ok(Job::Dynamic(update)) => {
                queued.fetch_sub(1, Ordering::SeqCst);
                next = Some(update);
            }
            Ok(other) => *held = Some(other),
            Err(_) => {}
        }
    }
    state
}

type Reply = Option<(oneshot::Sender<Answer>, Result<serde_json::Value, String>)>;

fn reload<B: Backend>(
    engine: &mut Engine<B>,
    trigger: Trigger,
    why: &'static str,
    reply: Option<oneshot::Sender<Answer>>,
) -> (Change, Reply) {
    let confirm = match trigger {
        Trigger::Request { confirm } => confirm,
        Trigger::Files => None,
    };
    match engine.reload(trigger) {
        Ok(outcome) => {
            log_applied(engine, outcome, why);
            let answer = json!({ "generation": engine.generation, "confirm-secs": confirm.map(|d| d.as_secs()) });
            (Change::Applied, reply.map(|tx| (tx, Ok(answer))))
        }
        Err(e) => {
            match trigger {
                Trigger::Files => tracing::error!(target: TARGET, "reload ({why}) failed: {e:#}"),
                Trigger::Request { .. } => tracing::error!(target: TARGET, "{why} failed: {e:#}"),
            }
            (Change::Nothing, reply.map(|tx| (tx, Err(format!("{e:#}")))))
        }
    }
}

/// Logs an update of the elements of some sets (`what`).
fn log_set_update(result: Result<usize, EngineError>, what: &str) {
    match result {
        Ok(0) => {}
        Ok(sets) => tracing::info!(target: TARGET, sets, "{what} updated"),
        Err(e) => {
            tracing::error!(target: TARGET, "updating the {what} failed; they keep their previous elements: {e:#}")
        }
    }
}

/// Logs a successful apply or reload.
pub fn log_applied<B: Backend>(engine: &Engine<B>, outcome: Outcome, why: &str) {
    let Some(a) = &engine.applied else { return };
    let (files, rules, sets, elements) =
        (a.policy.files.len(), a.policy.rules.len(), a.compiled.table.sets.len(), a.compiled.table.element_count());
    match outcome {
        Outcome::Applied => tracing::info!(
            target: TARGET,
            trigger = why,
            generation = engine.generation,
            files,
            rules,
            sets,
            elements,
            apply_ms = engine.last_apply.as_millis() as u64,
            "policy applied"
        ),
        Outcome::Unchanged => tracing::info!(
            target: TARGET,
            trigger = why,
            generation = engine.generation,
            files,
            rules,
            "policy reloaded; the table is unchanged"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NoopBackend;
    use crate::net::AddrRange;
    use crate::policy::values::Keyword;
    use crate::testutil::{write, TempDir};

    #[tokio::test]
    async fn an_apply_is_answered_after_its_snapshot_and_reads_see_it() {
        let d = TempDir::new("worker");
        std::os::unix::fs::symlink("/dev/null", d.0.join("00-default.yaml")).unwrap();
        write(
            &d.0,
            "10.yaml",
            "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n",
        );
        let mut engine = Engine::new(crate::policy::Dirs::new(vec![d.0.clone()], Vec::new()), NoopBackend::default());
        engine.reload(Trigger::Files).unwrap();
        let (worker, mut done) = Worker::start(engine);

        let (client, answer) = oneshot::channel();
        worker.send(Job::Reload { trigger: Trigger::Request { confirm: None }, why: "apply", reply: Some(client) });
        let Done { snapshot, change, reply } = done.recv().await.unwrap();
        assert_eq!((snapshot.generation, change, worker.queued()), (2, Change::Applied, 0));
        let (client, response) = reply.expect("the apply's client");
        assert!(matches!(&response, Response::Ok(v) if v["generation"] == 2), "{response:?}");
        client.send(Answer::Whole(response)).ok().unwrap();
        assert!(answer.await.is_ok());

        let (client, answer) = oneshot::channel();
        worker.send(Job::Confirm(client));
        let Done { reply, .. } = done.recv().await.unwrap();
        assert!(matches!(reply, Some((_, Response::Error(e))) if e.contains("nothing is waiting")));
        drop(answer);
        assert_eq!(worker.stop().await.generation, 2, "the engine comes back");
    }

    #[test]
    fn queued_dynamic_updates_make_one_set_update_with_the_last_values() {
        let d = TempDir::new("worker-fold");
        write(
            &d.0,
            "10.yaml",
            "rules:\n  - { name: dns-out, direction: out, action: block, protocol: udp, remote-addresses: [dns] }\n",
        );
        let mut engine = Engine::new(crate::policy::Dirs::new(vec![d.0.clone()], Vec::new()), NoopBackend::default());
        engine.reload(Trigger::Files).unwrap();
        let dns = |last: u8| {
            let mut state = DynState::default();
            state.push_host(Keyword::Dns, std::net::Ipv4Addr::new(192, 0, 2, last).into(), "test".into());
            Job::Dynamic((&[Keyword::Dns], state))
        };
        let (jobs, queue) = std::sync::mpsc::channel();
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let (client, _answer) = oneshot::channel();
        for job in [dns(1), dns(2), dns(3), Job::Confirm(client), dns(4)] {
            jobs.send(job).unwrap();
        }
        drop(jobs);
        let queued = AtomicUsize::new(5);

        let engine = work(engine, queue, &queued, done_tx);
        let changes: Vec<Change> = std::iter::from_fn(|| done.try_recv().ok()).map(|d| d.change).collect();
        assert_eq!(
            changes,
            [Change::Dynamic, Change::Nothing, Change::Dynamic],
            "three updates folded, the confirm kept"
        );
        assert_eq!(queued.load(Ordering::SeqCst), 0);
        assert_eq!(engine.backend.set_updates.len(), 2, "one transaction per fold");
        let last = engine.dynamic.entries(Keyword::Dns, true);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].addresses, AddrRange::V4(0xc000_0204, 0xc000_0204));
    }
}
