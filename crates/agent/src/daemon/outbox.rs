//! The durable outbox: every report (`StateLog`, `RoundStart`, `RoundEnd`) gets the next `seq`, is
//! written to `<state dir>/outbox/<seq>.json` (atomically) before anyone may send it, and is
//! removed only when the hub acknowledges it. After a disconnect or a restart, what is left is
//! replayed in order. `acked` remembers the highest acknowledged seq, so a restarted agent never
//! reuses a seq (the hub would drop the report as a duplicate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use opsagent_proto::AgentMessage;
use opsagent_states::ctx::Owner;
use opsagent_states::fsutil::write_atomic;
use tokio::sync::watch;

/// Pending reports, in memory and on disk.
pub struct Outbox {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// The highest seq appended: the sender watches it.
    latest: watch::Sender<u64>,
}

struct Inner {
    pending: BTreeMap<u64, String>,
    next_seq: u64,
    acked: u64,
}

impl Outbox {
    /// Opens (creating) the outbox under `state_dir`, loading what a previous run left.
    pub fn open(state_dir: &Path) -> anyhow::Result<Outbox> {
        let dir = state_dir.join("outbox");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let acked = read_counter(&dir.join("acked"))?;
        let mut pending = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
            let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if seq <= acked {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            pending.insert(seq, text);
        }
        let next_seq = pending.keys().next_back().copied().unwrap_or(0).max(acked) + 1;
        let (latest, _) = watch::channel(next_seq - 1);
        Ok(Outbox { dir, inner: Mutex::new(Inner { pending, next_seq, acked }), latest })
    }

    /// Stores a report built for the next seq; returns that seq.
    pub fn append(&self, build: impl FnOnce(u64) -> AgentMessage) -> anyhow::Result<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = inner.next_seq;
        let text = opsagent_proto::encode(&build(seq));
        let path = self.dir.join(format!("{seq:020}.json"));
        write_atomic(&path, text.as_bytes(), 0o600, Owner::default())
            .with_context(|| format!("writing {}", path.display()))?;
        inner.pending.insert(seq, text);
        inner.next_seq = seq + 1;
        drop(inner);
        self.latest.send_replace(seq);
        Ok(seq)
    }

    /// The hub holds everything up to `seq`: forget it.
    pub fn ack(&self, seq: u64) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if seq <= inner.acked {
            return Ok(());
        }
        let seq = seq.min(inner.next_seq - 1);
        // Remember the ack before deleting, so a crash in between cannot reuse seqs.
        write_atomic(&self.dir.join("acked"), seq.to_string().as_bytes(), 0o600, Owner::default())
            .with_context(|| format!("writing {}/acked", self.dir.display()))?;
        inner.acked = seq;
        let kept = inner.pending.split_off(&(seq + 1));
        let gone = std::mem::replace(&mut inner.pending, kept);
        drop(inner);
        for old in gone.keys() {
            let _ = std::fs::remove_file(self.dir.join(format!("{old:020}.json")));
        }
        Ok(())
    }

    /// The hub holds seqs up to `last_seq` from this instance: new reports must come after it,
    /// even if this agent's state was lost (a reinstall), or the hub would drop them as duplicates.
    pub fn continue_after(&self, last_seq: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.next_seq <= last_seq {
            tracing::warn!(
                last_seq,
                next_seq = inner.next_seq,
                "the hub holds later reports than this agent remembers: continuing after them"
            );
            inner.next_seq = last_seq + 1;
        }
    }

    /// Reports with a seq above `after`, in order.
    pub fn after(&self, after: u64) -> Vec<(u64, String)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.pending.range(after + 1..).map(|(s, t)| (*s, t.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).pending.len()
    }

    /// Changes whenever a report is appended.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

fn read_counter(path: &Path) -> anyhow::Result<u64> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().with_context(|| format!("{} does not hold a number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(seq: u64) -> AgentMessage {
        AgentMessage::RoundEnd { seq, recipe_version: 1, round: 1, result: "succeeded".into(), duration_ms: 0 }
    }

    #[test]
    fn survives_restart_and_never_reuses_a_seq() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.append(log).unwrap(), 1);
        assert_eq!(outbox.append(log).unwrap(), 2);
        assert_eq!(outbox.append(log).unwrap(), 3);
        outbox.ack(2).unwrap();
        assert_eq!(outbox.after(0).iter().map(|e| e.0).collect::<Vec<_>>(), [3]);
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.after(0).iter().map(|e| e.0).collect::<Vec<_>>(), [3]);
        outbox.ack(3).unwrap();
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.len(), 0);
        assert_eq!(outbox.append(log).unwrap(), 4, "a seq is never reused after a restart");
    }

    #[test]
    fn a_reinstalled_agent_continues_after_the_hubs_last_seq() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.continue_after(41);
        outbox.ack(41).unwrap();
        assert_eq!(outbox.append(log).unwrap(), 42);
        drop(outbox);
        assert_eq!(Outbox::open(dir.path()).unwrap().append(log).unwrap(), 43);
    }
}
