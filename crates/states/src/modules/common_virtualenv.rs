//! `common.virtualenv` — a Python virtual environment (`python3 -m venv`), optionally with a requirements file installed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `path` | absolute path | required | the environment's directory (the original's `name`) |
//! | `python-bin` | program name or absolute path | `python3` | the interpreter that creates it (the original's `python`); the environment runs this Python's version |
//! | `system-site-packages` | bool | `false` | whether the environment sees the system's packages (`include-system-site-packages` in `pyvenv.cfg`); the original's IDE showed `true`, but its state's default was `false`, which is kept |
//! | `requirements-file` | absolute path | — | installed with the environment's pip (`pip install -r`) after creating it, and again whenever the file's content changes |
//! | `extra-search-dir` | list of absolute paths | — | directories of wheels the requirements are also looked for in (`pip --find-links`); `venv` seeds pip from the interpreter's own bundled wheels, so they do not apply to the seed packages |
//!
//! "Already fine" means `<path>/bin/python` runs and is of the same Python version (major.minor)
//! as `python-bin`, `pyvenv.cfg` has the wanted `include-system-site-packages`, and the
//! requirements file (if any) has the SHA-256 recorded after it was last installed into this
//! environment (kept under `<state dir>/virtualenv/<state id>.json`, saved only after the
//! install succeeded, so a failed install is tried again next round). `--test` shows `create PATH
//! (python3 -m venv, Python 3.11)`, `update PATH (recreate, REASON: …)` when the environment's Python is of
//! another version or does not run (it is recreated empty, `venv --clear`: its packages were built
//! for the other Python), `update PATH (system site packages: false -> true)` (only `pyvenv.cfg`
//! is rewritten) and `update PATH (install requirements from FILE, sha256 …)`. A directory at
//! `path` that holds something other than a virtualenv is an error, never overwritten.
//!
//! Creating needs the `venv` module with `ensurepip`: on Debian and Ubuntu the package
//! `python3-venv` (a missing one fails the state, naming it). The original installed the
//! `virtualenv` tool with pip first; the standard `venv` needs nothing from the network.
//!
//! ```yaml
//! - id: app-venv
//!   module: common.virtualenv
//!   parameter: { path: /opt/app/venv, requirements-file: /opt/app/requirements.txt }
//! ```

use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};
use sha2::{Digest, Sha256};

use super::linux_file::{absolute_path, check_absolute};
use crate::ctx::Owner;
use crate::process::{run_spec, Output, Spec, Tail};
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

const VENV_HINT: &str = "install the Debian package `python3-venv` (an earlier `linux.apt.package` state can)";

/// A validated `common.virtualenv`.
#[derive(Debug, Clone)]
pub struct Virtualenv {
    pub state_id: String,
    pub path: PathBuf,
    pub python_bin: String,
    pub system_site_packages: bool,
    pub requirements_file: Option<PathBuf>,
    pub extra_search_dirs: Vec<PathBuf>,
}

/// What `check` found to do, in the order `apply` does it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Todo {
    /// Create (or recreate, emptied) with `venv`; the reason when recreating.
    create: Option<Option<String>>,
    /// Rewrite `include-system-site-packages` in `pyvenv.cfg`.
    site_packages: bool,
    /// Install the requirements file, whose content has this SHA-256.
    requirements: Option<String>,
    /// The Python version `python-bin` runs (major.minor).
    version: String,
}

impl Virtualenv {
    pub fn from_params(state: &State) -> Result<(Virtualenv, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let path = absolute_path(&mut p, "path").map(|v| PathBuf::from(v.display().to_string().trim_end_matches('/')));
        let python_pos = p.node("python-bin").and_then(|n| n.pos);
        let python_bin = p.string("python-bin").filter(|b| !b.trim().is_empty()).unwrap_or_else(|| "python3".into());
        if python_bin.chars().any(char::is_whitespace) || python_bin.contains("..") {
            p.report(
                Kind::BadValue,
                "python-bin",
                python_pos,
                format!("`{python_bin}` is not an interpreter name or path"),
                Some(
                    "give a program name found on PATH (`python3.11`) or an absolute path (`/usr/bin/python3`)".into(),
                ),
            );
        }
        let system_site_packages = p.bool("system-site-packages").unwrap_or(false);
        let req_pos = p.node("requirements-file").and_then(|n| n.pos);
        let requirements_file = p
            .string("requirements-file")
            .filter(|f| !f.trim().is_empty())
            .and_then(|f| check_absolute(&mut p, "requirements-file", req_pos, &f));
        let dirs_pos = p.node("extra-search-dir").and_then(|n| n.pos);
        let dirs = p.string_list("extra-search-dir").unwrap_or_default();
        let extra_search_dirs = dirs
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.trim().is_empty())
            .filter_map(|(i, d)| check_absolute(&mut p, &format!("extra-search-dir[{i}]"), dirs_pos, d))
            .collect();
        let warnings =
            p.finish(&["path", "python-bin", "system-site-packages", "requirements-file", "extra-search-dir"], &[])?;
        let Some(path) = path else {
            unreachable!("finish fails when `path` is missing or invalid");
        };
        Ok((
            Virtualenv {
                state_id: state.id.clone(),
                path,
                python_bin,
                system_site_packages,
                requirements_file,
                extra_search_dirs,
            },
            warnings,
        ))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let todo = self.todo(ctx).await?;
        Ok(Plan { changes: self.changes(&todo), diff: None })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let todo = self.todo(ctx).await?;
        let changes = self.changes(&todo);
        if changes != plan.changes {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                problem: "changed between the check and the apply; the next round will see it again".into(),
            });
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut keep = |output: Output| {
            stdout.extend_from_slice(&output.stdout.bytes);
            stderr.extend_from_slice(&output.stderr.bytes);
        };
        let path = self.path.display().to_string();
        if let Some(recreate) = &todo.create {
            let parent = fsutil::parent_of(&self.path);
            std::fs::create_dir_all(parent).map_err(StateError::io("creating directory", parent))?;
            let mut args = vec!["-m".to_string(), "venv".into()];
            if recreate.is_some() {
                args.push("--clear".into());
            }
            if self.system_site_packages {
                args.push("--system-site-packages".into());
            }
            args.push(path.clone());
            keep(self.venv(ctx, args).await?);
        } else if todo.site_packages {
            self.rewrite_site_packages()?;
        }
        if let Some(sha) = &todo.requirements {
            // `todo` plans the requirements only when a file is given.
            let file = self.requirements_file.as_ref().expect("requirements are installed only when a file is given");
            let mut args = vec![
                "install".to_string(),
                "--disable-pip-version-check".into(),
                "--no-input".into(),
                "--quiet".into(),
            ];
            for dir in &self.extra_search_dirs {
                args.push("--find-links".into());
                args.push(dir.display().to_string());
            }
            args.push("--requirement".into());
            args.push(file.display().to_string());
            let spec = Spec { program: self.path.join("bin/pip").display().to_string(), args, ..Spec::default() };
            keep(run_spec(ctx, &spec, "the virtualenv has no pip: create it again (`venv` seeds pip)").await?);
            self.save_fingerprint(ctx, file, sha)?;
        }
        // Verify: the environment is now as wanted.
        let after = self.todo(ctx).await?;
        if after.create.is_some() || after.site_packages {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                problem: format!(
                    "is still not as wanted after `{} -m venv`: {}",
                    self.python_bin,
                    self.changes(&after).iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                ),
            });
        }
        let max = ctx.round.max_output_bytes;
        Ok(Outcome {
            changes,
            stdout: Some(Tail::from_bytes(stdout, max)),
            stderr: Some(Tail::from_bytes(stderr, max)),
            ..Outcome::default()
        })
    }

    fn changes(&self, todo: &Todo) -> Vec<Change> {
        let shown = self.path.display().to_string();
        let mut changes = Vec::new();
        let site = if self.system_site_packages { ", system site packages" } else { "" };
        match &todo.create {
            Some(None) => changes.push(Change::new(
                Action::Create,
                &shown,
                format!("{} -m venv, Python {}{site}", self.python_bin, todo.version),
            )),
            Some(Some(reason)) => changes.push(Change::new(
                Action::Update,
                &shown,
                format!("recreate, {reason}: {} -m venv, Python {}{site}", self.python_bin, todo.version),
            )),
            None => {}
        }
        if todo.site_packages {
            let (from, to) = (!self.system_site_packages, self.system_site_packages);
            changes.push(Change::new(Action::Update, &shown, format!("system site packages: {from} -> {to}")));
        }
        if let (Some(sha), Some(file)) = (&todo.requirements, &self.requirements_file) {
            changes.push(Change::new(
                Action::Update,
                &shown,
                format!("install requirements from {}, sha256 {}", file.display(), &sha[..12]),
            ));
        }
        changes
    }

    /// Compares the environment with the parameters. Read-only.
    async fn todo(&self, ctx: &Ctx) -> Result<Todo, StateError> {
        let version = self.python_version(ctx, &self.python_bin).await?;
        let mut todo = Todo { version: version.clone(), ..Todo::default() };
        let cfg = self.path.join("pyvenv.cfg");
        if !cfg.exists() {
            let occupied = std::fs::read_dir(&self.path).map(|mut d| d.next().is_some()).unwrap_or(false);
            if self.path.exists() && (!self.path.is_dir() || occupied) {
                return Err(StateError::Conflict {
                    path: self.path.clone(),
                    problem: "exists and is not a virtualenv (no `pyvenv.cfg`); remove it or choose another path"
                        .into(),
                });
            }
            todo.create = Some(None);
        } else {
            let python = self.path.join("bin/python").display().to_string();
            match self.python_version(ctx, &python).await {
                Ok(have) if have == version => {}
                Ok(have) => todo.create = Some(Some(format!("it runs Python {have}"))),
                Err(StateError::Cancelled) => return Err(StateError::Cancelled),
                Err(_) => todo.create = Some(Some("its `bin/python` does not run".into())),
            }
            if todo.create.is_none() {
                let text = std::fs::read_to_string(&cfg).map_err(StateError::io("reading", &cfg))?;
                todo.site_packages = site_packages_of(&text) != self.system_site_packages;
            }
        }
        if let Some(file) = &self.requirements_file {
            let bytes = std::fs::read(file).map_err(StateError::io("reading the requirements file", file))?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if todo.create.is_some() || self.saved_fingerprint(ctx, file).as_deref() != Some(sha.as_str()) {
                todo.requirements = Some(sha);
            }
        }
        Ok(todo)
    }

    /// `major.minor` of a Python interpreter.
    async fn python_version(&self, ctx: &Ctx, program: &str) -> Result<String, StateError> {
        let args = vec!["-c".to_string(), "import sys; print('%d.%d' % sys.version_info[:2])".into()];
        let spec = Spec { program: program.to_string(), args, ..Spec::default() };
        let hint = format!("install it (e.g. the Debian package `python3`), or name another interpreter in `python-bin` (`{program}` was asked)");
        let output = run_spec(ctx, &spec, &hint).await?;
        Ok(String::from_utf8_lossy(&output.stdout.bytes).trim().to_string())
    }

    /// Runs `python-bin ARGS` (`-m venv …`); a Python without `ensurepip` names `python3-venv`.
    async fn venv(&self, ctx: &Ctx, args: Vec<String>) -> Result<Output, StateError> {
        let spec = Spec { program: self.python_bin.clone(), args, ..Spec::default() };
        match run_spec(ctx, &spec, VENV_HINT).await {
            Err(StateError::Command { termination, stdout, stderr }) => {
                let text = format!("{}{}", stdout.text(), stderr.text());
                if text.contains("ensurepip is not available") || text.contains("No module named venv") {
                    return Err(StateError::MissingTool { tool: "python3-venv".into(), hint: VENV_HINT.into() });
                }
                Err(StateError::Command { termination, stdout, stderr })
            }
            other => other,
        }
    }

    fn rewrite_site_packages(&self) -> Result<(), StateError> {
        let cfg = self.path.join("pyvenv.cfg");
        let text = std::fs::read_to_string(&cfg).map_err(StateError::io("reading", &cfg))?;
        let line = format!("include-system-site-packages = {}", self.system_site_packages);
        let mut found = false;
        let mut out: Vec<String> = text
            .lines()
            .map(|l| match l.split_once('=') {
                Some((key, _)) if key.trim() == "include-system-site-packages" => {
                    found = true;
                    line.clone()
                }
                _ => l.to_string(),
            })
            .collect();
        if !found {
            out.push(line);
        }
        let mode = std::fs::metadata(&cfg).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
        fsutil::write_atomic(&cfg, (out.join("\n") + "\n").as_bytes(), mode.unwrap_or(0o644), Owner::default())
            .map_err(StateError::io("writing", &cfg))
    }

    fn fingerprint_file(&self, ctx: &Ctx) -> PathBuf {
        ctx.round.state_dir.join("virtualenv").join(format!("{}.json", self.state_id.replace('/', "-")))
    }

    /// The SHA-256 recorded when the requirements were last installed into this environment.
    fn saved_fingerprint(&self, ctx: &Ctx, file: &Path) -> Option<String> {
        let text = std::fs::read_to_string(self.fingerprint_file(ctx)).ok()?;
        let saved: serde_json::Value = serde_json::from_str(&text).ok()?;
        let same = saved["path"].as_str() == Some(&self.path.display().to_string())
            && saved["requirements_file"].as_str() == Some(&file.display().to_string());
        same.then(|| saved["sha256"].as_str().map(str::to_string)).flatten()
    }

    fn save_fingerprint(&self, ctx: &Ctx, file: &Path, sha: &str) -> Result<(), StateError> {
        let target = self.fingerprint_file(ctx);
        let dir = fsutil::parent_of(&target);
        std::fs::create_dir_all(dir).map_err(StateError::io("creating", dir))?;
        let text = serde_json::json!({
            "path": self.path.display().to_string(),
            "requirements_file": file.display().to_string(),
            "sha256": sha,
        })
        .to_string();
        fsutil::write_atomic(&target, text.as_bytes(), 0o600, Owner::default())
            .map_err(StateError::io("writing", &target))
    }
}

/// `include-system-site-packages` of a `pyvenv.cfg` (absent means false).
fn site_packages_of(cfg: &str) -> bool {
    cfg.lines().any(|l| {
        l.split_once('=')
            .is_some_and(|(k, v)| k.trim() == "include-system-site-packages" && v.trim().eq_ignore_ascii_case("true"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pyvenv_cfg() {
        assert!(site_packages_of("home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11.2\n"));
        assert!(!site_packages_of("home = /usr/bin\ninclude-system-site-packages = false\n"));
        assert!(!site_packages_of("home = /usr/bin\n"));
    }
}
