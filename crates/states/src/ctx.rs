//! `Ctx`: what a module may use while checking or applying a state — its cancellation token and
//! timeout, where commands run by default, output limits, and a per-round cache of facts (user
//! and group lookups) so that a round asks the system once, not once per state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User};
use tokio_util::sync::CancellationToken;

use crate::StateError;

/// Settings and caches shared by every state of one round.
#[derive(Debug)]
pub struct RoundCtx {
    /// The agent's state directory (`/var/lib/madeira`): watch checksums and other module data.
    pub state_dir: PathBuf,
    /// Default working directory of `linux.cmd` (`<state dir>/tmp`), created when first needed.
    pub work_dir: PathBuf,
    /// Bytes of stdout and of stderr kept (the tail) per command.
    pub max_output_bytes: usize,
    /// Grace between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace: Duration,
    users: Mutex<HashMap<String, Option<UserInfo>>>,
    groups: Mutex<HashMap<String, Option<u32>>>,
    done_once: Mutex<std::collections::HashSet<String>>,
    /// Extra CA files (PEM) that downloads trust, beside the public and system roots.
    pub ca_files: Vec<PathBuf>,
    tls: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, crate::http::HttpError>>,
    fetched: Mutex<HashMap<String, crate::fetch::Downloaded>>,
}

/// The parts of a passwd entry that modules use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl RoundCtx {
    pub fn new(state_dir: PathBuf) -> RoundCtx {
        RoundCtx {
            work_dir: state_dir.join("tmp"),
            state_dir,
            max_output_bytes: 16 * 1024,
            kill_grace: Duration::from_secs(5),
            users: Mutex::default(),
            groups: Mutex::default(),
            done_once: Mutex::default(),
            ca_files: Vec::new(),
            tls: std::sync::OnceLock::new(),
            fetched: Mutex::default(),
        }
    }

    /// True the first time it is asked for `key` in this round: for work done once per round,
    /// such as refreshing a package database (`if ctx.round.first_in_round("apt-update") { … }`).
    pub fn first_in_round(&self, key: &str) -> bool {
        self.done_once.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string())
    }

    /// Forgets `key`, so that the next [`RoundCtx::first_in_round`] is true again (after a failed refresh).
    pub fn forget(&self, key: &str) {
        self.done_once.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// The TLS configuration for downloads, built on first use.
    pub fn tls(&self) -> Result<Arc<rustls::ClientConfig>, crate::http::HttpError> {
        self.tls.get_or_init(|| crate::fetch::tls_for(&self.ca_files)).clone()
    }

    /// The download of `url` made earlier in this round, if any.
    pub fn fetched(&self, url: &str) -> Option<crate::fetch::Downloaded> {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).get(url).cloned()
    }

    /// Remembers a download for the rest of the round.
    pub fn remember_fetch(&self, url: &str, downloaded: &crate::fetch::Downloaded) {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).insert(url.to_string(), downloaded.clone());
    }

    /// Forgets every key starting with `prefix` (a repository changed: every refresh of a package
    /// manager's metadata, whatever repositories it covered, must happen again).
    pub fn forget_prefix(&self, prefix: &str) {
        self.done_once.lock().unwrap_or_else(|p| p.into_inner()).retain(|key| !key.starts_with(prefix));
    }

    /// Drops the user and group caches (after a module created or changed accounts).
    pub fn forget_accounts(&self) {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Looks a user up by name (or numeric id), once per round.
    pub fn user(&self, name: &str) -> Result<UserInfo, StateError> {
        let mut cache = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(name) {
            return hit.clone().ok_or_else(|| StateError::UnknownUser(name.to_string()));
        }
        let found = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
            Err(_) => User::from_name(name).ok().flatten(),
        };
        let info = found.map(|u| UserInfo { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir });
        // A numeric id with no passwd entry is still a valid owner.
        let info = info.or_else(|| {
            name.parse::<u32>().ok().map(|uid| UserInfo {
                name: name.to_string(),
                uid,
                gid: uid,
                home: PathBuf::from("/"),
            })
        });
        cache.insert(name.to_string(), info.clone());
        info.ok_or_else(|| StateError::UnknownUser(name.to_string()))
    }

    /// Looks a group up by name (or numeric id), once per round.
    pub fn group(&self, name: &str) -> Result<u32, StateError> {
        let mut cache = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(name) {
            return hit.ok_or_else(|| StateError::UnknownGroup(name.to_string()));
        }
        let gid = match name.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw()),
        };
        cache.insert(name.to_string(), gid);
        gid.ok_or_else(|| StateError::UnknownGroup(name.to_string()))
    }

    /// Resolves optional owner names to ids.
    pub fn owner(&self, user: Option<&str>, group: Option<&str>) -> Result<Owner, StateError> {
        Ok(Owner {
            uid: user.map(|u| self.user(u)).transpose()?.map(|u| u.uid),
            gid: group.map(|g| self.group(g)).transpose()?,
        })
    }

    /// Name of a group id, for messages.
    pub fn group_name(gid: u32) -> String {
        Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name).unwrap_or_else(|| gid.to_string())
    }

    /// Name of a user id, for messages.
    pub fn user_name(uid: u32) -> String {
        User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
    }
}

/// Desired ownership; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// What one state may use while it is checked or applied.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub round: Arc<RoundCtx>,
    /// Cancelled when the state must stop at once (new recipe, shutdown).
    pub cancel: CancellationToken,
    pub timeout: Duration,
    /// Hide contents and output of this state (diffs, command lines).
    pub sensitive: bool,
}

impl Ctx {
    pub fn new(round: Arc<RoundCtx>, cancel: CancellationToken, timeout: Duration) -> Ctx {
        Ctx { round, cancel, timeout, sensitive: false }
    }
}
