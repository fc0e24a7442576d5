//! The store file's one writer: a thread that runs write transactions in
//! the order they arrive and makes each batch durable with one fsync.
//!
//! redb runs one write transaction at a time and a durable commit waits for
//! an fsync (about 200 µs on a cloud disk, more than the transaction's own
//! work). So the writer takes every job waiting when it wakes, commits all
//! but the last without an fsync (redb's `Durability::None`: visible to
//! readers, durable with the next durable commit) and the last with one;
//! only then are the batch's callers answered. One turn in flight costs what
//! it did; many in flight share the fsync instead of queueing behind one
//! each. Every [`SWEEP_EVERY`]th job sweeps what expired first.
//!
//! Readers see a batch's commits as they are made, up to one fsync before
//! they are durable: a crash (of the machine, or of the process before the
//! batch's fsync) in that window loses what a reader may have seen, never
//! what a caller was told is stored.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, Durability, WriteTransaction};

use super::{EmbeddedStore, SWEEP_EVERY, backend};
use crate::store::StoreError;

/// When a write's caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Once the fsync that makes the write durable is done.
    WhenDurable,
    /// Once the write is committed (readers see it). The batch's fsync
    /// follows at once, before the writer runs anything else, so a crash
    /// loses at most the answered writes of one batch.
    WhenCommitted,
}

/// The most jobs one fsync covers (a bound on how long the first waits).
const GROUP: usize = 64;

/// What a write job decides about its transaction.
pub(super) enum Verdict<T> {
    /// Commit what the job wrote, then answer `T`.
    Commit(T),
    /// Drop the transaction unwritten (nothing changed), then answer `T`.
    Abort(T),
}

/// A job as the writer runs it: its transaction opened at the durability
/// given, run, settled.
type Job = Box<dyn FnOnce(&Database, Durability) -> Ran + Send>;

/// A job that ran: whether it committed, and its answer, sent once the
/// batch is durable (with the outcome of that).
struct Ran {
    committed: bool,
    answer: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// The handle the store's clones share; the last one dropped stops the
/// thread and waits for it, so the file is closed when the store is.
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `db`, answering as `answer` says.
    pub(super) fn start(db: Arc<Database>, answer: Answer) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ctxgate-store-writer".into())
            .spawn(move || run(&db, &queue, answer))
            .map_err(backend)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` in a write transaction of its own and answers once what it
    /// committed is durable. A caller that goes away does not stop the job.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<Verdict<T>, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (send, receive) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |db, durability| {
            let (committed, result) = settle(db, durability, f);
            Ran {
                committed,
                answer: Box::new(move |synced| {
                    let result = match (result, synced) {
                        (Ok(_), Err(e)) if committed => Err(backend(e)),
                        (result, _) => result,
                    };
                    // A caller gone meanwhile needs no answer.
                    let _ = send.send(result);
                }),
            }
        });
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| backend("the store's writer has stopped"))?;
        receive
            .await
            .map_err(|_| backend("the store's writer stopped before answering"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has run what is queued.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the embedded store's writer panicked");
        }
    }
}

/// Opens a transaction at `durability`, runs `f` in it and commits or
/// drops it as `f` says: (whether it committed, what to answer).
fn settle<T>(
    db: &Database,
    durability: Durability,
    f: impl FnOnce(&WriteTransaction) -> Result<Verdict<T>, StoreError>,
) -> (bool, Result<T, StoreError>) {
    let mut tx = match db.begin_write() {
        Ok(tx) => tx,
        Err(e) => return (false, Err(backend(e))),
    };
    if let Err(e) = tx.set_durability(durability) {
        return (false, Err(backend(e)));
    }
    // Dropping an uncommitted transaction (errors, aborts) rolls it back.
    match f(&tx) {
        Err(e) => (false, Err(e)),
        Ok(Verdict::Abort(v)) => (false, Ok(v)),
        Ok(Verdict::Commit(v)) => match tx.commit() {
            Ok(()) => (true, Ok(v)),
            Err(e) => (false, Err(backend(e))),
        },
    }
}

/// The writer thread: batches of waiting jobs, each batch made durable
/// before its callers hear of it (or, answering [`Answer::WhenCommitted`],
/// right after), until every sender is gone.
fn run(db: &Database, queue: &mpsc::Receiver<Job>, answer: Answer) {
    let mut seen: u64 = 0;
    while let Ok(first) = queue.recv() {
        let batch: Vec<Job> = std::iter::once(first)
            .chain(queue.try_iter().take(GROUP - 1))
            .collect();
        // Whether a commit of this batch is not durable yet.
        let mut unsynced = false;
        if seen % SWEEP_EVERY + batch.len() as u64 >= SWEEP_EVERY {
            unsynced = sweep(db);
        }
        seen += batch.len() as u64;
        let last = batch.len() - 1;
        let mut ran = Vec::with_capacity(batch.len());
        for (i, job) in batch.into_iter().enumerate() {
            let durable = i == last && answer == Answer::WhenDurable;
            let durability = if durable {
                Durability::Immediate
            } else {
                Durability::None
            };
            // A job that panics fails its own caller only (its answer is
            // dropped with it, its transaction rolled back), as a panicking
            // request does on the local server; the writer goes on.
            let Ok(r) = std::panic::catch_unwind(AssertUnwindSafe(|| job(db, durability))) else {
                continue;
            };
            if r.committed {
                // A durable commit makes every earlier one durable too.
                unsynced = !durable;
            }
            match answer {
                Answer::WhenDurable => ran.push(r),
                Answer::WhenCommitted => (r.answer)(Ok(())),
            }
        }
        let synced = if unsynced { sync(db) } else { Ok(()) };
        if let Err(e) = &synced
            && answer == Answer::WhenCommitted
        {
            // Its callers have their answers; redb refuses writes from here
            // on, so the next callers hear of it.
            tracing::error!(error = %e, "the embedded store could not make answered writes durable");
        }
        for r in ran {
            (r.answer)(synced.clone());
        }
    }
}

/// Sweeps what expired by now, without an fsync of its own (the batch's
/// makes it durable); a failure only costs space, so it is logged. Whether
/// it committed.
fn sweep(db: &Database) -> bool {
    let swept = std::panic::catch_unwind(AssertUnwindSafe(|| {
        settle(db, Durability::None, |tx| {
            EmbeddedStore::sweep_in(tx, crate::now_secs()).map(Verdict::Commit)
        })
    }));
    match swept {
        Ok((committed, Ok(_))) => committed,
        Ok((committed, Err(e))) => {
            tracing::warn!(error = %e, "embedded store sweep failed");
            committed
        }
        Err(_) => false,
    }
}

/// Makes the commits before it durable: an empty durable commit (its fsync
/// covers them).
fn sync(db: &Database) -> Result<(), String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    /// A job that writes `key` (or only looks, when `commit` is false),
    /// with a channel for its answer.
    fn put(key: &'static str, commit: bool) -> (Job, mpsc::Receiver<Result<(), String>>) {
        let (send, answers) = mpsc::channel();
        let job: Job = Box::new(move |db, durability| {
            let (committed, result) = settle(db, durability, move |tx| {
                tx.open_table(T)
                    .map_err(backend)?
                    .insert(key, 1)
                    .map_err(backend)?;
                Ok(if commit {
                    Verdict::Commit(())
                } else {
                    Verdict::Abort(())
                })
            });
            Ran {
                committed,
                answer: Box::new(move |synced| {
                    let _ = send.send(result.map_err(|e| e.to_string()).and(synced));
                }),
            }
        });
        (job, answers)
    }

    /// What a crash now would leave: a copy of the file as it is on disk,
    /// opened (and repaired) as redb opens a file after a crash.
    fn after_crash(dir: &std::path::Path, keys: &[&str]) -> Vec<bool> {
        let copy = dir.join("copy.redb");
        std::fs::copy(dir.join("db.redb"), &copy).unwrap();
        let db = Database::create(&copy).unwrap();
        let tx = db.begin_read().unwrap();
        let found = match tx.open_table(T) {
            Ok(t) => keys.iter().map(|k| t.get(*k).unwrap().is_some()).collect(),
            Err(_) => vec![false; keys.len()],
        };
        drop((tx, db));
        std::fs::remove_file(copy).unwrap();
        found
    }

    #[test]
    fn a_batch_is_durable_when_answered_even_if_its_last_job_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db.redb")).unwrap();
        // The check can fail: a commit without an fsync is not in the copy.
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None).unwrap();
        tx.open_table(T).unwrap().insert("loose", 1).unwrap();
        tx.commit().unwrap();
        assert_eq!(after_crash(dir.path(), &["loose"]), [false]);

        // One batch: two commits, then a job that aborts (last, so the one
        // that would have carried the fsync).
        let (queue_in, queue) = mpsc::channel();
        let mut answers = Vec::new();
        for (key, commit) in [("a", true), ("b", true), ("c", false)] {
            let (job, answer) = put(key, commit);
            queue_in.send(job).unwrap();
            answers.push(answer);
        }
        drop(queue_in);
        run(&db, &queue, Answer::WhenDurable);
        for a in &answers {
            assert_eq!(a.recv().unwrap(), Ok(()));
        }
        assert_eq!(
            after_crash(dir.path(), &["loose", "a", "b", "c"]),
            [true, true, true, false]
        );
    }

    #[test]
    fn a_job_that_panics_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db.redb")).unwrap();
        let (queue_in, queue) = mpsc::channel();
        let (before, before_answer) = put("before", true);
        let (after, after_answer) = put("after", true);
        let (held, dropped) = mpsc::channel::<()>();
        let panics: Job = Box::new(move |db, durability| {
            let _held = held;
            let _ = settle(db, durability, |tx| -> Result<Verdict<()>, StoreError> {
                tx.open_table(T)
                    .map_err(backend)?
                    .insert("panic", 1)
                    .map_err(backend)?;
                panic!("a job's bug")
            });
            unreachable!("the job panicked")
        });
        for job in [before, panics, after] {
            queue_in.send(job).unwrap();
        }
        drop(queue_in);
        run(&db, &queue, Answer::WhenDurable);
        // The panicking job's caller hears its answer dropped; the others commit.
        assert!(dropped.recv().is_err());
        assert_eq!(before_answer.recv().unwrap(), Ok(()));
        assert_eq!(after_answer.recv().unwrap(), Ok(()));
        assert_eq!(
            after_crash(dir.path(), &["before", "panic", "after"]),
            [true, false, true]
        );
    }

    #[test]
    fn answering_when_committed_answers_before_the_fsync_that_follows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db.redb")).unwrap();
        let (queue_in, queue) = mpsc::channel();
        let (send, answers) = mpsc::channel();
        let at = dir.path().to_owned();
        let job: Job = Box::new(move |db, durability| {
            let (committed, result) = settle(db, durability, |tx| {
                tx.open_table(T)
                    .map_err(backend)?
                    .insert("a", 1)
                    .map_err(backend)?;
                Ok(Verdict::Commit(()))
            });
            Ran {
                committed,
                // What a crash at the moment of the answer would keep.
                answer: Box::new(move |synced| {
                    let kept = after_crash(&at, &["a"]);
                    let _ = send.send((result.is_ok() && synced.is_ok(), kept));
                }),
            }
        });
        queue_in.send(job).unwrap();
        drop(queue_in);
        run(&db, &queue, Answer::WhenCommitted);
        // Answered before it was durable (the check fails when the fsync
        // comes first), and durable once the writer is idle.
        assert_eq!(answers.recv().unwrap(), (true, vec![false]));
        assert_eq!(after_crash(dir.path(), &["a"]), [true]);
    }
}
