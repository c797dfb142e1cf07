//! Helpers for the CLI tests: run the real `opsagent` binary in a temp dir, snapshot trees.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opsagent"))
}

/// A scratch directory with a recipe in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::Builder::new().prefix("opsagent-test-").tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a recipe file; `@` in it stands for the scratch directory.
    pub fn recipe(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text.replace('@', &self.dir.path().display().to_string())).unwrap();
        path
    }

    pub fn apply(&self, recipe: &Path, extra: &[&str]) -> Run {
        let mut cmd = Command::new(bin());
        cmd.arg("apply").arg(recipe).args(extra).arg("--state-dir").arg(self.path("state")).env("NO_COLOR", "1");
        Run::from(cmd.output().expect("run opsagent"))
    }
}

/// The outcome of one CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    /// The status of each state in a JSON report, `id=status`.
    pub fn statuses(&self) -> Vec<String> {
        self.json()["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}={}", s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect()
    }
}

/// Every change of a JSON report, state after state, as `action target (detail)`.
pub fn changes(run: &Run) -> Vec<String> {
    let json = run.json();
    let states = json["states"].as_array().unwrap_or_else(|| panic!("no states:\n{}\n{}", run.stdout, run.stderr));
    states
        .iter()
        .flat_map(|s| s["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            format!(
                "{} {} ({})",
                c["action"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect()
}

/// Everything observable about a tree: per path, kind, mode, owner, inode, mtime and content.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, &mut out);
    out
}

fn walk(path: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let content = if meta.is_file() {
        format!("{:?}", std::fs::read(path).unwrap())
    } else if meta.file_type().is_symlink() {
        format!("-> {}", std::fs::read_link(path).unwrap().display())
    } else {
        String::new()
    };
    out.insert(
        path.to_path_buf(),
        format!(
            "mode={:o} uid={} gid={} ino={} mtime={}.{} {content}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec()
        ),
    );
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            walk(&entry.unwrap().path(), out);
        }
    }
}

/// Polls `predicate` until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if predicate() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    predicate()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}
