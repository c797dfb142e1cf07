//! Group commit for reports: every connection's reports go through one task that stores
//! whatever is waiting (up to [`MAX_BATCH`]) in one transaction, so that a thousand agents
//! reporting at once cost a few hundred commits instead of thousands. Each caller still gets
//! its own answer, and only after the commit.

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::Report;

/// Reports stored in one transaction at most.
const MAX_BATCH: usize = 256;

struct Job {
    app: String,
    instance: String,
    report: Report,
    answer: oneshot::Sender<anyhow::Result<bool>>,
}

#[derive(Clone)]
pub(super) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the task; it ends when every `Batcher` is dropped.
    pub(super) fn start(writer: SqlitePool) -> Batcher {
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(writer, receiver));
        Batcher { jobs }
    }

    /// Stores a report (after the batch it joined is committed); `false` for a duplicate.
    pub(super) async fn record(&self, app: &str, instance: &str, report: &Report) -> anyhow::Result<bool> {
        let (answer, result) = oneshot::channel();
        let job = Job { app: app.to_string(), instance: instance.to_string(), report: report.clone(), answer };
        if self.jobs.send(job).await.is_err() {
            anyhow::bail!("the store is closed");
        }
        match result.await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the store stopped before storing the report"),
        }
    }
}

async fn run(writer: SqlitePool, mut receiver: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let results = store_batch(&writer, &jobs).await;
        for (job, result) in jobs.drain(..).zip(results) {
            // The caller may be gone (its connection closed): nothing to tell then.
            let _ = job.answer.send(result);
        }
    }
}

/// Stores every job in one transaction. A job that fails alone (an unknown instance) fails
/// alone; a failed commit fails them all (none was acknowledged, the agents replay them).
async fn store_batch(writer: &SqlitePool, jobs: &[Job]) -> Vec<anyhow::Result<bool>> {
    let failed_all = |e: &dyn std::fmt::Display| -> Vec<anyhow::Result<bool>> {
        jobs.iter().map(|_| Err(anyhow::anyhow!("storing reports: {e}"))).collect()
    };
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => return failed_all(&e),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(super::sqlite::record_report_in(&mut tx, &job.app, &job.instance, &job.report).await);
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => failed_all(&e),
    }
}
