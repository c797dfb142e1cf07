//! The store on its own: the bounded history and deduplication after pruning.

use opsagent_hub::store::{Effect, Report, Store, HISTORY_PER_INSTANCE};
use serde_json::json;

fn report(seq: u64) -> Report {
    Report {
        seq,
        kind: "RoundStart",
        body: json!({ "code": "RoundStart", "seq": seq }),
        recipe_version: 1,
        effect: Effect::RoundStart { round: seq },
    }
}

#[tokio::test]
async fn history_is_bounded_per_instance_and_pruned_seqs_stay_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    assert!(store.create_app("demo").await.unwrap());
    assert!(store.create_instance("demo", "web-1", "s", "web").await.unwrap());
    assert!(store.create_instance("demo", "web-2", "s", "web").await.unwrap());
    let total = HISTORY_PER_INSTANCE as u64 + 300;
    for seq in 1..=total {
        assert!(store.record_report("demo", "web-1", &report(seq)).await.unwrap());
    }
    assert!(store.record_report("demo", "web-2", &report(1)).await.unwrap());
    let seqs = store.seqs("demo", "web-1").await.unwrap();
    assert!(seqs.len() as i64 <= HISTORY_PER_INSTANCE + 256, "{}", seqs.len());
    assert!(seqs.len() as i64 >= HISTORY_PER_INSTANCE, "{}", seqs.len());
    assert_eq!(seqs.last(), Some(&total));
    // A pruned seq replayed is a duplicate, not a new report.
    assert!(!store.record_report("demo", "web-1", &report(5)).await.unwrap());
    assert!(!store.record_report("demo", "web-1", &report(total)).await.unwrap());
    let instance = store.instance("demo", "web-1").await.unwrap().unwrap();
    assert_eq!(instance.last_seq, total);
    assert_eq!(instance.round, Some(total));
    // Another instance's history is its own.
    assert_eq!(store.seqs("demo", "web-2").await.unwrap(), vec![1]);
    store.close().await;
}
