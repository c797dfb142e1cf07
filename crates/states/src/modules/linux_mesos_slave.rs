//! `linux.mesos.slave` — a Mesos slave (agent): `mesos-slave` configured for the cluster's masters and running.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `masters_addresses` | dict: address → host name | required | every master: `10.0.0.1: master1`; the host name may be empty |
//! | `attributes` | dict | — | the slave's attributes: `{rack: rack-5, zone: all}` gives `rack:rack-5;zone:all` |
//! | `slave_ip` | IP address | required | this slave's address (`/etc/mesos-slave/ip` and `hostname`) |
//!
//! Writes, each only when its content differs (mode 0644, atomically): `/etc/mesos/zk`
//! (`zk://ADDRESS:2181,…/mesos`), `/etc/mesos-slave/ip`, `hostname` (the slave's IP),
//! `containerizers` (`docker,mesos`), `executor_registration_timeout` (`5mins`) and, when there are
//! attributes, `attributes`. Masters given a host name get an `ADDRESS NAME` line in `/etc/hosts`.
//! Then `mesos-slave` must be running and enabled at boot: started when down, restarted when one of
//! its files changed since the state last succeeded (the original watched the master's files here
//! by mistake, so a slave never restarted for a new attribute). `--test` lists each file (with
//! diffs), start, restart and enable.
//!
//! Mesos is not installed by opsagent: without a `mesos-slave` service the state fails naming it
//! before changing anything. Unlike the original, it does not set up `haproxy-marathon-bridge` (a
//! script the original shipped itself) nor ask the EC2 metadata service for an `az` attribute.
//!
//! ```yaml
//! - id: mesos-slave
//!   module: linux.mesos.slave
//!   parameter:
//!     masters_addresses: { 10.0.0.1: master1, 10.0.0.2: master2, 10.0.0.3: master3 }
//!     attributes: { subnet: web, rack: rack-5 }
//!     slave_ip: 10.0.1.7
//! ```

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_mesos_master::{read_ip, read_masters};
use crate::providers::mesos::{slave_files, slave_services, Setup, SlaveConfig};
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `linux.mesos.slave`.
#[derive(Debug, Clone)]
pub struct MesosSlave {
    pub config: SlaveConfig,
    pub setup: Setup,
}

impl MesosSlave {
    pub fn from_params(state: &State) -> Result<(MesosSlave, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let masters = read_masters(&mut p);
        let pos = p.node("attributes").and_then(|n| n.pos);
        let mut attributes = Vec::new();
        for entry in p.dict("attributes").unwrap_or_default() {
            let key = entry.key.trim().to_string();
            let value = entry.value.map(|v| v.trim().to_string()).unwrap_or_default();
            let param = format!("attributes.{}", entry.key);
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || ":;".contains(c)) {
                p.report(Kind::BadValue, &param, pos, format!("`{key}` is not an attribute name"), None);
            } else if value.is_empty() || value.chars().any(|c| c == ';' || c == '\n') {
                p.report(
                    Kind::BadValue,
                    &param,
                    pos,
                    format!("attribute `{key}` needs a value without `;`"),
                    Some("e.g. `rack: rack-5`".into()),
                );
            } else {
                attributes.push((key, value));
            }
        }
        let slave_ip = read_ip(&mut p, "slave_ip", "give this slave's IP address, e.g. `slave_ip: 10.0.1.7`");
        let warnings = p.finish(&["masters_addresses", "attributes", "slave_ip"], &[])?;
        let config = SlaveConfig { masters, attributes, slave_ip: slave_ip.unwrap_or_default() };
        let setup = Setup {
            state_id: state.id.clone(),
            files: slave_files(&config),
            services: slave_services(),
            masters: config.masters.clone(),
        };
        Ok((MesosSlave { config, setup }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.setup.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.setup.apply(ctx, plan).await
    }
}
