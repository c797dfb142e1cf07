//! Mesos, behind `linux.mesos.master` and `linux.mesos.slave`: the configuration files the
//! mesosphere packages read (`/etc/mesos*/…`, ZooKeeper's `zoo.cfg` and `myid`, Marathon's
//! `/etc/marathon/conf/…`) and the masters' names in `/etc/hosts`, all made by plain functions
//! (unit-tested byte for byte), then the services (`zookeeper`, `mesos-master`, `marathon`,
//! `mesos-slave`) running and enabled through [`service`], restarted when their files change.
//! Nothing is installed: a missing service is a `MissingTool` error naming it, before any change.

use std::path::{Path, PathBuf};

use crate::ctx::Owner;
use crate::providers::service::{self, InitSystem, Op};
use crate::{diff, fsutil, watch, Action, Change, Ctx, Outcome, Plan, StateError};

pub const INSTALL_HINT: &str =
    "install Mesos first (the mesosphere packages `mesos`, and `zookeeperd`/`marathon` on masters); opsagent does not install it, unlike the original";

/// One master of the cluster: its address (IP, or a name) and an optional host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub address: String,
    pub hostname: Option<String>,
}

impl Master {
    /// How the others reach it: its host name when it has one, else its address.
    fn name(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.address)
    }
}

/// A file this module manages, and the service that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub content: String,
    pub service: &'static str,
}

fn file(path: &str, content: impl Into<String>, service: &'static str) -> ConfigFile {
    let mut content = content.into();
    if !content.ends_with('\n') {
        content.push('\n');
    }
    ConfigFile { path: PathBuf::from(path), content, service }
}

/// `zk://a:2181,b:2181/<path>`, the masters by `name`.
fn zk_url(masters: &[Master], name: impl Fn(&Master) -> &str, path: &str) -> String {
    let hosts: Vec<String> = masters.iter().map(|m| format!("{}:2181", name(m))).collect();
    format!("zk://{}/{path}", hosts.join(","))
}

/// What `linux.mesos.master` configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterConfig {
    pub cluster_name: String,
    /// ZooKeeper's `myid` (1–255).
    pub server_id: u8,
    pub masters: Vec<Master>,
    pub master_ip: String,
    pub hostname: Option<String>,
    pub marathon: bool,
}

/// The services of a master, in start order.
pub fn master_services(config: &MasterConfig) -> Vec<&'static str> {
    let mut services = vec!["zookeeper", "mesos-master"];
    if config.marathon {
        services.push("marathon");
    }
    services
}

/// The files of a master.
pub fn master_files(config: &MasterConfig) -> Vec<ConfigFile> {
    let hostname = config.hostname.as_deref().unwrap_or(&config.master_ip);
    let mut zoo =
        String::from("tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/lib/zookeeper\nclientPort=2181\n");
    for (i, master) in config.masters.iter().enumerate() {
        zoo.push_str(&format!("server.{}={}:2888:3888\n", i + 1, master.address));
    }
    // A majority of the masters (the original wrote one more than that, so that losing a
    // single master of three stopped the cluster).
    let quorum = config.masters.len() / 2 + 1;
    let mut files = vec![
        file("/var/lib/zookeeper/myid", config.server_id.to_string(), "zookeeper"),
        file("/etc/zookeeper/conf/zoo.cfg", zoo, "zookeeper"),
        file("/etc/mesos/zk", zk_url(&config.masters, |m| &m.address, "mesos"), "mesos-master"),
        file("/etc/mesos-master/quorum", quorum.to_string(), "mesos-master"),
        file("/etc/mesos-master/ip", config.master_ip.clone(), "mesos-master"),
        file("/etc/mesos-master/hostname", hostname, "mesos-master"),
        file("/etc/mesos-master/cluster", config.cluster_name.clone(), "mesos-master"),
    ];
    if config.marathon {
        files.push(file("/etc/marathon/conf/hostname", hostname, "marathon"));
        files.push(file("/etc/marathon/conf/master", zk_url(&config.masters, Master::name, "mesos"), "marathon"));
        files.push(file("/etc/marathon/conf/zk", zk_url(&config.masters, Master::name, "marathon"), "marathon"));
    }
    files
}

/// What `linux.mesos.slave` configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveConfig {
    pub masters: Vec<Master>,
    /// `key:value` pairs, in order.
    pub attributes: Vec<(String, String)>,
    pub slave_ip: String,
}

pub fn slave_services() -> Vec<&'static str> {
    vec!["mesos-slave"]
}

/// The files of a slave.
pub fn slave_files(config: &SlaveConfig) -> Vec<ConfigFile> {
    let mut files = vec![
        file("/etc/mesos/zk", zk_url(&config.masters, |m| &m.address, "mesos"), "mesos-slave"),
        file("/etc/mesos-slave/ip", config.slave_ip.clone(), "mesos-slave"),
        file("/etc/mesos-slave/hostname", config.slave_ip.clone(), "mesos-slave"),
        file("/etc/mesos-slave/containerizers", "docker,mesos", "mesos-slave"),
        file("/etc/mesos-slave/executor_registration_timeout", "5mins", "mesos-slave"),
    ];
    if !config.attributes.is_empty() {
        let line: Vec<String> = config.attributes.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        files.push(file("/etc/mesos-slave/attributes", line.join(";"), "mesos-slave"));
    }
    files
}

/// `/etc/hosts` with a line `ADDRESS NAME` for each master that has a host name: a name found on
/// another address's line is taken off it (a line left without names goes), and a missing pair is
/// appended. Everything else is kept as it is.
pub fn hosts_with(current: &str, masters: &[Master]) -> String {
    let mut lines: Vec<String> = current.lines().map(str::to_string).collect();
    let mut edited = false;
    for master in masters {
        let Some(name) = &master.hostname else { continue };
        let present = lines.iter().any(|line| {
            let mut words = fields(line);
            words.next() == Some(master.address.as_str()) && words.any(|w| w == name)
        });
        if present {
            continue;
        }
        lines = lines
            .into_iter()
            .filter_map(|line| {
                let words: Vec<&str> = fields(&line).collect();
                if words.len() < 2 || !words[1..].contains(&name.as_str()) {
                    return Some(line);
                }
                let kept: Vec<&str> = words[1..].iter().copied().filter(|w| w != name).collect();
                (!kept.is_empty()).then(|| format!("{}\t{}", words[0], kept.join(" ")))
            })
            .collect();
        lines.push(format!("{}\t{name}", master.address));
        edited = true;
    }
    if !edited {
        return current.to_string();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The words of a hosts line before any comment.
fn fields(line: &str) -> impl Iterator<Item = &str> {
    line.split('#').next().unwrap_or("").split_whitespace()
}

const HOSTS: &str = "/etc/hosts";

/// One `linux.mesos.*` state: its files, its services, the masters to name in `/etc/hosts`.
#[derive(Debug, Clone)]
pub struct Setup {
    pub state_id: String,
    pub files: Vec<ConfigFile>,
    pub services: Vec<&'static str>,
    pub masters: Vec<Master>,
}

impl Setup {
    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let init = InitSystem::detect();
        // Mesos's own services first: without Mesos, the error names Mesos, not ZooKeeper.
        let mut by_kind: Vec<&str> = self.services.clone();
        by_kind.sort_by_key(|name| !name.starts_with("mesos"));
        for name in by_kind {
            if !service::exists(ctx, init, name).await? {
                return Err(StateError::MissingTool { tool: name.to_string(), hint: INSTALL_HINT.into() });
            }
        }
        let mut plan = Plan::default();
        let mut diffs = Vec::new();
        let mut changed: Vec<String> = Vec::new();
        let hosts = read(Path::new(HOSTS))?.unwrap_or_default();
        let wanted = hosts_with(&hosts, &self.masters);
        if wanted != hosts {
            plan.changes.push(Change::new(Action::Update, HOSTS, "the masters' host names"));
            diffs.push(diff::unified(HOSTS, hosts.as_bytes(), wanted.as_bytes()));
        }
        for f in &self.files {
            let current = read(&f.path)?;
            if current.as_deref() == Some(f.content.as_str()) {
                continue;
            }
            let (action, detail) = match &current {
                None => (Action::Create, format!("{} bytes, for {}", f.content.len(), f.service)),
                Some(_) => (Action::Update, format!("for {}", f.service)),
            };
            plan.changes.push(Change::new(action, f.path.display().to_string(), detail));
            diffs.push(diff::unified(
                &f.path.display().to_string(),
                current.unwrap_or_default().as_bytes(),
                f.content.as_bytes(),
            ));
            changed.push(f.path.display().to_string());
        }
        for path in watch::changed_files(ctx, &self.state_id, &self.watched())? {
            if !changed.contains(&path) {
                changed.push(path);
            }
        }
        for name in &self.services {
            let its: Vec<&str> = self
                .files
                .iter()
                .filter(|f| f.service == *name)
                .map(|f| f.path.to_str().unwrap_or_default())
                .filter(|p| changed.iter().any(|c| c == p))
                .collect();
            if !service::is_running(ctx, init, name).await? {
                plan.changes.push(Change::new(Action::Start, *name, format!("not running ({})", init.as_str())));
            } else if !its.is_empty() {
                plan.changes.push(Change::new(Action::Restart, *name, format!("changed: {}", its.join(", "))));
            }
            if !service::is_enabled(ctx, init, name).await? {
                plan.changes.push(Change::new(Action::Enable, *name, "start at boot"));
            }
        }
        if !ctx.sensitive && !diffs.is_empty() {
            plan.diff = Some(diffs.concat());
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let init = InitSystem::detect();
        for change in &plan.changes {
            match change.action {
                Action::Create | Action::Update if change.target == HOSTS => {
                    let hosts = read(Path::new(HOSTS))?.unwrap_or_default();
                    write(Path::new(HOSTS), &hosts_with(&hosts, &self.masters))?;
                }
                Action::Create | Action::Update => {
                    if let Some(f) = self.files.iter().find(|f| f.path.to_str() == Some(change.target.as_str())) {
                        write(&f.path, &f.content)?;
                    }
                }
                Action::Start => service::run(ctx, init, &change.target, Op::Start).await?,
                Action::Restart => service::run(ctx, init, &change.target, Op::Restart).await?,
                Action::Enable => service::enable(ctx, init, &change.target).await?,
                _ => {}
            }
        }
        for name in &self.services {
            if !service::is_running(ctx, init, name).await? {
                return Err(StateError::Conflict {
                    path: PathBuf::from(name),
                    problem: "is still not running; see its log (e.g. /var/log/mesos) or its init script's output"
                        .into(),
                });
            }
        }
        watch::save(ctx, &self.state_id, &self.watched())?;
        Ok(plan.into())
    }

    fn watched(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

fn read(path: &Path) -> Result<Option<String>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io("reading", path)(e)),
    }
}

/// Writes a configuration file (mode 0644, root's), creating its directory.
fn write(path: &Path, content: &str) -> Result<(), StateError> {
    let dir = fsutil::parent_of(path);
    std::fs::create_dir_all(dir).map_err(StateError::io("creating", dir))?;
    fsutil::write_atomic(path, content.as_bytes(), 0o644, Owner::default()).map_err(StateError::io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters() -> Vec<Master> {
        vec![
            Master { address: "10.0.0.1".into(), hostname: Some("master1".into()) },
            Master { address: "10.0.0.2".into(), hostname: Some("master2".into()) },
            Master { address: "10.0.0.3".into(), hostname: None },
        ]
    }

    fn contents(files: &[ConfigFile]) -> Vec<(String, String, &'static str)> {
        files.iter().map(|f| (f.path.display().to_string(), f.content.clone(), f.service)).collect()
    }

    fn f(path: &str, content: &str, service: &'static str) -> (String, String, &'static str) {
        (path.to_string(), content.to_string(), service)
    }

    #[test]
    fn master_files_and_services() {
        let config = MasterConfig {
            cluster_name: "Mesos Cluster".into(),
            server_id: 2,
            masters: masters(),
            master_ip: "10.0.0.2".into(),
            hostname: Some("master2".into()),
            marathon: true,
        };
        assert_eq!(master_services(&config), ["zookeeper", "mesos-master", "marathon"]);
        assert_eq!(
            contents(&master_files(&config)),
            [
                f("/var/lib/zookeeper/myid", "2\n", "zookeeper"),
                f(
                    "/etc/zookeeper/conf/zoo.cfg",
                    "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/lib/zookeeper\nclientPort=2181\n\
                     server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:2888:3888\nserver.3=10.0.0.3:2888:3888\n",
                    "zookeeper"
                ),
                f("/etc/mesos/zk", "zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos\n", "mesos-master"),
                f("/etc/mesos-master/quorum", "2\n", "mesos-master"),
                f("/etc/mesos-master/ip", "10.0.0.2\n", "mesos-master"),
                f("/etc/mesos-master/hostname", "master2\n", "mesos-master"),
                f("/etc/mesos-master/cluster", "Mesos Cluster\n", "mesos-master"),
                f("/etc/marathon/conf/hostname", "master2\n", "marathon"),
                f("/etc/marathon/conf/master", "zk://master1:2181,master2:2181,10.0.0.3:2181/mesos\n", "marathon"),
                f("/etc/marathon/conf/zk", "zk://master1:2181,master2:2181,10.0.0.3:2181/marathon\n", "marathon"),
            ]
        );
        let single = MasterConfig { masters: masters()[..1].to_vec(), hostname: None, marathon: false, ..config };
        assert_eq!(master_services(&single), ["zookeeper", "mesos-master"]);
        let files = contents(&master_files(&single));
        assert_eq!(files.len(), 7);
        assert!(files.contains(&f("/etc/mesos-master/quorum", "1\n", "mesos-master")));
        assert!(files.contains(&f("/etc/mesos-master/hostname", "10.0.0.2\n", "mesos-master")));
    }

    #[test]
    fn slave_files_and_services() {
        let config = SlaveConfig {
            masters: masters(),
            attributes: vec![("subnet".into(), "web".into()), ("rack".into(), "rack-5".into())],
            slave_ip: "10.0.1.7".into(),
        };
        assert_eq!(slave_services(), ["mesos-slave"]);
        assert_eq!(
            contents(&slave_files(&config)),
            [
                f("/etc/mesos/zk", "zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos\n", "mesos-slave"),
                f("/etc/mesos-slave/ip", "10.0.1.7\n", "mesos-slave"),
                f("/etc/mesos-slave/hostname", "10.0.1.7\n", "mesos-slave"),
                f("/etc/mesos-slave/containerizers", "docker,mesos\n", "mesos-slave"),
                f("/etc/mesos-slave/executor_registration_timeout", "5mins\n", "mesos-slave"),
                f("/etc/mesos-slave/attributes", "subnet:web;rack:rack-5\n", "mesos-slave"),
            ]
        );
        let bare = SlaveConfig { attributes: Vec::new(), ..config };
        assert_eq!(slave_files(&bare).len(), 5);
    }

    #[test]
    fn hosts_gain_the_masters_names_once() {
        let current = "127.0.0.1\tlocalhost\n# the masters\n10.9.9.9\tmaster1 old-alias\n10.0.0.2 master2\n";
        let wanted = hosts_with(current, &masters());
        assert_eq!(
            wanted,
            "127.0.0.1\tlocalhost\n# the masters\n10.9.9.9\told-alias\n10.0.0.2 master2\n10.0.0.1\tmaster1\n"
        );
        assert_eq!(hosts_with(&wanted, &masters()), wanted);
        // A line left without names goes.
        assert_eq!(hosts_with("10.9.9.9 master2\n", &masters()), "10.0.0.1\tmaster1\n10.0.0.2\tmaster2\n");
        assert_eq!(hosts_with("127.0.0.1 localhost", &masters()[2..]), "127.0.0.1 localhost");
    }
}
