//! `linux.mesos.master` — a Mesos master: ZooKeeper, `mesos-master` (and Marathon) configured and running.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `cluster_name` | string | required | `/etc/mesos-master/cluster` |
//! | `server_id` | 1–255 | required | this master's ZooKeeper id (`/var/lib/zookeeper/myid`); unique among the masters |
//! | `masters_addresses` | dict: address → host name | required | every master (this one too), in the same order on each: `10.0.0.1: master1`; the host name may be empty |
//! | `master_ip` | IP address | required | this master's address (`/etc/mesos-master/ip`) |
//! | `hostname` | host name | `master_ip` | `/etc/mesos-master/hostname` (and Marathon's) |
//! | `framework` | list | — | `marathon` also configures and runs Marathon |
//!
//! Writes, each only when its content differs (mode 0644, atomically): `/var/lib/zookeeper/myid`,
//! `/etc/zookeeper/conf/zoo.cfg` (`server.N=ADDRESS:2888:3888` for the masters in order),
//! `/etc/mesos/zk` (`zk://ADDRESS:2181,…/mesos`), `/etc/mesos-master/{quorum,ip,hostname,cluster}`
//! — the quorum is a majority of the masters (the original wrote one more, so that with three
//! masters losing one stopped the cluster) — and with Marathon `/etc/marathon/conf/{hostname,master,zk}`
//! (the masters by host name). Masters given a host name get an `ADDRESS NAME` line in
//! `/etc/hosts` (the name is taken off any other address's line). Then `zookeeper`,
//! `mesos-master` and `marathon` must be running and enabled at boot: started when down, restarted
//! when one of their files changed since the state last succeeded (fingerprints under
//! `<state dir>/watch/`, as for `linux.service`; the first run counts as a change, as in the
//! original). `--test` lists each file (with diffs), start, restart and enable.
//!
//! Mesos is not installed by opsagent (the original added Oracle Java, the mesosphere repository
//! and its packages): if one of the services is unknown to the init system, the state fails naming
//! it (`mesos-master`, `zookeeper`, `marathon`) before changing anything. Unlike the original,
//! `/etc/hostname` is left alone and no upstart `.override` files are written.
//!
//! ```yaml
//! - id: mesos-master
//!   module: linux.mesos.master
//!   parameter:
//!     cluster_name: shop
//!     server_id: "1"
//!     masters_addresses: { 10.0.0.1: master1, 10.0.0.2: master2, 10.0.0.3: master3 }
//!     master_ip: 10.0.0.1
//!     hostname: master1
//!     framework: [marathon]
//! ```

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use crate::providers::mesos::{master_files, master_services, Master, MasterConfig, Setup};
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `linux.mesos.master`.
#[derive(Debug, Clone)]
pub struct MesosMaster {
    pub config: MasterConfig,
    pub setup: Setup,
}

impl MesosMaster {
    pub fn from_params(state: &State) -> Result<(MesosMaster, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let cluster_name = p.required_string("cluster_name", "name the cluster, e.g. `cluster_name: shop`");
        if let Some(name) = &cluster_name {
            if name.trim().is_empty() || name.contains('\n') {
                let pos = p.node("cluster_name").and_then(|n| n.pos);
                p.report(Kind::BadValue, "cluster_name", pos, "`cluster_name` must be one non-empty line", None);
            }
        }
        let server_id = server_id(&mut p);
        let masters = read_masters(&mut p);
        let master_ip = read_ip(&mut p, "master_ip", "give this master's IP address, e.g. `master_ip: 10.0.0.1`");
        let hostname = optional_host(&mut p, "hostname");
        let pos = p.node("framework").and_then(|n| n.pos);
        let mut marathon = false;
        for (i, framework) in p.string_list("framework").unwrap_or_default().iter().enumerate() {
            match framework.trim() {
                "marathon" => marathon = true,
                "" => {}
                other => p.report(
                    Kind::BadValue,
                    &format!("framework[{i}]"),
                    pos,
                    format!("`{other}` is not a framework this module installs"),
                    Some("the only framework is `marathon`".into()),
                ),
            }
        }
        let warnings =
            p.finish(&["cluster_name", "server_id", "masters_addresses", "master_ip", "hostname", "framework"], &[])?;
        let config = MasterConfig {
            cluster_name: cluster_name.unwrap_or_default().trim().to_string(),
            server_id: server_id.unwrap_or(1),
            masters,
            master_ip: master_ip.unwrap_or_default(),
            hostname,
            marathon,
        };
        let setup = Setup {
            state_id: state.id.clone(),
            files: master_files(&config),
            services: master_services(&config),
            masters: config.masters.clone(),
        };
        Ok((MesosMaster { config, setup }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.setup.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.setup.apply(ctx, plan).await
    }
}

fn server_id(p: &mut ParamReader<'_>) -> Option<u8> {
    if !p.has("server_id") {
        p.node("server_id");
        p.report(
            Kind::MissingParameter,
            "server_id",
            None,
            "required parameter `server_id` is missing",
            Some("give this master's ZooKeeper id, 1 to 255, unique among the masters, e.g. `server_id: \"1\"`".into()),
        );
        return None;
    }
    let pos = p.node("server_id").and_then(|n| n.pos);
    let id = p.u64("server_id")?;
    match u8::try_from(id) {
        Ok(id) if id >= 1 => Some(id),
        _ => {
            p.report(
                Kind::BadValue,
                "server_id",
                pos,
                format!("`{id}` is not a ZooKeeper id"),
                Some("ZooKeeper ids go from 1 to 255".into()),
            );
            None
        }
    }
}

/// `masters_addresses`: every master's address and optional host name.
pub(crate) fn read_masters(p: &mut ParamReader<'_>) -> Vec<Master> {
    let name = "masters_addresses";
    let pos = p.node(name).and_then(|n| n.pos);
    let mut masters = Vec::new();
    match p.dict(name) {
        None if !p.has(name) => p.report(
            Kind::MissingParameter,
            name,
            None,
            "required parameter `masters_addresses` is missing",
            Some("list every master's address and host name, e.g. `masters_addresses: { 10.0.0.1: master1 }`".into()),
        ),
        None => {}
        Some(entries) if entries.is_empty() => {
            p.report(Kind::BadValue, name, pos, "`masters_addresses` lists no master", None)
        }
        Some(entries) => {
            for entry in entries {
                let address = entry.key.trim().to_string();
                let hostname = entry.value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
                if !valid_host(&address) {
                    p.report(
                        Kind::BadValue,
                        &format!("{name}.{}", entry.key),
                        pos,
                        format!("`{address}` is not an address"),
                        Some("give the master's IP address (or a name), e.g. `10.0.0.1: master1`".into()),
                    );
                    continue;
                }
                if let Some(host) = hostname.as_deref().filter(|h| !valid_host(h)) {
                    p.report(
                        Kind::BadValue,
                        &format!("{name}.{}", entry.key),
                        pos,
                        format!("`{host}` is not a host name"),
                        Some("host names have letters, digits, `.` and `-`".into()),
                    );
                    continue;
                }
                masters.push(Master { address, hostname });
            }
        }
    }
    masters
}

/// A required IP address.
pub(crate) fn read_ip(p: &mut ParamReader<'_>, name: &str, hint: &str) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let ip = p.required_string(name, hint)?.trim().to_string();
    if ip.parse::<std::net::IpAddr>().is_err() {
        p.report(Kind::BadValue, name, pos, format!("`{ip}` is not an IP address"), Some(hint.to_string()));
        return None;
    }
    Some(ip)
}

fn optional_host(p: &mut ParamReader<'_>, name: &str) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let host = p.string(name).map(|h| h.trim().to_string()).filter(|h| !h.is_empty())?;
    if !valid_host(&host) {
        p.report(Kind::BadValue, name, pos, format!("`{host}` is not a host name"), None);
        return None;
    }
    Some(host)
}

/// A host name or an address: letters, digits, `.`, `-`, and `:` for IPv6.
fn valid_host(host: &str) -> bool {
    !host.is_empty() && !host.starts_with('-') && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
}
